"""Pure rewrites of SDP text that aiortc cannot be asked for."""

from __future__ import annotations

import re

# Chromium reads these from the *remote* description: without them it starts encoding at
# 640x360 and takes 20-30 s to reach 720p on aiortc's REMB-only feedback (fan-out.md).
START_BITRATE_KBPS = 2500
MIN_BITRATE_KBPS = 300
_HINT = f"x-google-start-bitrate={START_BITRATE_KBPS};x-google-min-bitrate={MIN_BITRATE_KBPS}"


def add_start_bitrate(sdp: str) -> str:
    """Add the start-bitrate hint to every video codec's a=fmtp (creating the line if the
    codec has none; VP8 has none by default). RTX codecs are left alone."""
    lines = sdp.split("\r\n")
    out: list[str] = []
    in_video = False
    video_pts: list[str] = []
    rtx_pts: set[str] = set()
    fmtp_seen: set[str] = set()

    def flush_missing() -> None:
        for pt in video_pts:
            if pt not in fmtp_seen and pt not in rtx_pts:
                out.append(f"a=fmtp:{pt} {_HINT}")

    for line in lines:
        if line.startswith("m="):
            if in_video:
                flush_missing()
            in_video = line.startswith("m=video")
            video_pts, rtx_pts, fmtp_seen = [], set(), set()
            if in_video:
                video_pts = line.split()[3:]
            out.append(line)
            continue
        if in_video:
            rtpmap = re.match(r"a=rtpmap:(\d+) ([^/]+)/", line)
            if rtpmap and rtpmap.group(2).lower() == "rtx":
                rtx_pts.add(rtpmap.group(1))
            fmtp = re.match(r"a=fmtp:(\d+) (.*)", line)
            if fmtp:
                fmtp_seen.add(fmtp.group(1))
                if "apt=" not in fmtp.group(2) and "x-google-start-bitrate" not in line:
                    line = f"{line};{_HINT}"
        out.append(line)
    if in_video:
        # The hint goes before the trailing empty string of the final CRLF.
        trailer = out.pop() if out and out[-1] == "" else None
        flush_missing()
        if trailer is not None:
            out.append(trailer)
    return "\r\n".join(out)


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$")


def announce_address(sdp: str, announced_ip: str) -> str:
    """Write the announced public address (1:1 NAT) into every host candidate and c= line,
    as mediasoup's announcedIp does; the sockets stay bound to the local address."""
    out = []
    for line in sdp.split("\r\n"):
        match = _CANDIDATE.match(line)
        if match:
            line = f"{match.group(1)}{announced_ip}{match.group(3)}"
        elif line.startswith("c=IN IP"):
            family = "IP6" if ":" in announced_ip else "IP4"
            line = f"c=IN {family} {announced_ip}"
        out.append(line)
    return "\r\n".join(out)
