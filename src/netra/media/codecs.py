"""Codec facts the forwarder needs, as pure functions of payload bytes.

A viewer may only start (or resume) video at the first packet of a keyframe; everything
before it would be undecodable.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCRtpCodecCapability, RTCRtpCodecParameters


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """First packet of a VP8 keyframe (RFC 7741 §4.2–4.3): S=1, PID=0, and P=0 in the
    payload header that follows the descriptor."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, partition index
        return False
    offset = 1
    if first & 0x80:  # X: extension byte follows
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: PictureID, 7 or 15 bits
            if offset >= len(payload):
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            offset += 1
    if offset >= len(payload):
        return False
    return not payload[offset] & 0x01  # P bit: 0 means keyframe


_H264_KEY_NALS = frozenset({5, 7})  # IDR slice, SPS (a keyframe starts with SPS/PPS/IDR)


def is_h264_keyframe_start(payload: bytes) -> bool:
    """A packet that starts an IDR access unit (RFC 6184 §5.6–5.8): a single SPS/IDR NAL,
    a STAP-A aggregating one, or the first fragment of an FU-A IDR."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NALS:
        return True
    if nal_type == 24:  # STAP-A: [size:16][nal]...
        offset = 1
        while offset + 2 < len(payload):
            size = int.from_bytes(payload[offset : offset + 2], "big")
            if size == 0 or offset + 2 + size > len(payload):
                return False
            if payload[offset + 2] & 0x1F in _H264_KEY_NALS:
                return True
            offset += 2 + size
        return False
    if nal_type == 28 and len(payload) >= 2:  # FU-A: start bit and the fragmented type
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in _H264_KEY_NALS
    return False


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool] | None:
    """The keyframe test for a codec, or None for codecs without keyframes (audio)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return is_vp8_keyframe_start
    if mime == "video/h264":
        return is_h264_keyframe_start
    return None


def as_capability(codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability:
    """The publisher's negotiated codec, as a preference for a viewer's transceiver: each
    viewer is offered exactly what the publisher sends."""
    return RTCRtpCodecCapability(
        mimeType=codec.mimeType,
        clockRate=codec.clockRate,
        channels=codec.channels,
        parameters=dict(codec.parameters),
    )


# Browsers that list no H.264 High among the profiles they receive (Debian's Chromium lists
# 42001f, 42e01f, 4d001f and f4001f) still decode it: their decoder is FFmpeg's or the
# platform's, which take any profile (tests/e2e/test_ffmpeg.py plays High in Chromium).
H264_FALLBACK_PROFILE_LEVEL_ID = "42e01f"


def viewer_preferences(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """What a viewer is offered for a publisher's codec: exactly that codec first, and for
    H.264 in another profile the constrained-baseline label as a second choice, so that a
    browser that does not list the publisher's profile (OBS's default, High) still plays."""
    exact = as_capability(codec)
    if codec.mimeType.lower() != "video/h264":
        return [exact]
    profile_level_id, mode = h264_variant(dict(codec.parameters))
    if profile_level_id[:2] == H264_FALLBACK_PROFILE_LEVEL_ID[:2]:
        return [exact]  # baseline already: every H.264 receiver takes it
    fallback = RTCRtpCodecCapability(
        mimeType=codec.mimeType,
        clockRate=codec.clockRate,
        parameters=h264_parameters(H264_FALLBACK_PROFILE_LEVEL_ID, mode),
    )
    return [exact, fallback]


# --- What Netra forwards ----------------------------------------------------------------------

# Netra forwards RTP without decoding, so it can carry any codec whose packets the forwarder
# understands well enough to start a viewer at a keyframe (video) or anywhere (audio).
# In order of preference, spelt as in SDP.
FORWARDED = ("video/VP8", "video/H264", "audio/opus")
FORWARDABLE_MIME_TYPES = frozenset(mime.lower() for mime in FORWARDED)


def forwardable(mime_type: str) -> bool:
    """Whether Netra can forward a codec (MIME type, any case, e.g. "video/H264")."""
    return mime_type.lower() in FORWARDABLE_MIME_TYPES


# H.264 as real encoders offer it (profile_idc, constraint flags, level_idc in hex), each
# answered exactly as offered so that viewers are offered what the publisher sends:
# constrained baseline 3.1 (browsers, libdatachannel/OBS), baseline 3.1 (browsers),
# baseline 1.3 (FFmpeg's WHIP muxer), main 3.1, constrained high 3.1, high 3.1 (OBS's x264
# default). An offer at another level of one of these profiles is answered with the listed
# level of that profile (RFC 6184 level-asymmetry-allowed: each side declares what it decodes).
H264_PROFILE_LEVEL_IDS = ("42001f", "42e01f", "42000d", "4d001f", "640c1f", "64001f")
# Non-interleaved first; single NAL unit mode (0) for encoders that offer only that.
H264_PACKETIZATION_MODES = ("1", "0")


def h264_parameters(profile_level_id: str, packetization_mode: str) -> dict[str, str | int | None]:
    """The fmtp parameters Netra uses for one H.264 variant, in aiortc's own spelling."""
    return {
        "level-asymmetry-allowed": "1",
        "packetization-mode": packetization_mode,
        "profile-level-id": profile_level_id,
    }


def h264_variant(parameters: dict[str, str | int | None]) -> tuple[str, str]:
    """(profile-level-id, packetization-mode) of an H.264 fmtp, with RFC 6184's defaults
    (aiortc reads a missing profile-level-id as constrained baseline 3.1)."""
    profile_level_id = str(parameters.get("profile-level-id") or "42e01f").lower()
    return profile_level_id, str(parameters.get("packetization-mode") or "0")
