"""The OBS-like publisher's media, made with PyAV (a Netra dependency through aiortc).

    python tests/clients/media.py OUTDIR [--seconds 4]

writes OUTDIR/video.h264 and OUTDIR/audio.opus, which `obslike.mjs` loops:

- video.h264: an H.264 Annex B elementary stream as OBS's x264 makes it for WHIP: libx264
  at preset veryfast, **High profile**, level 3.1, no B-frames (OBS forces bf=0), SPS/PPS
  repeated before every keyframe (OBS forces repeat_headers), a keyframe every 2 s, 1280x720
  at 30 fps, a moving test pattern (so a decoding viewer sees frames change).
- audio.opus: 20 ms Opus packets (48 kHz stereo, a 440 Hz tone), each prefixed by its length
  as a 16-bit big-endian integer (RTP carries bare Opus packets; no Ogg needed).

It checks what it wrote (profile_idc 100 in every SPS, no B-slices is x264's promise under
bf=0) and prints one JSON line describing both files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext

WIDTH, HEIGHT, FPS = 1280, 720, 30
KEYFRAME_INTERVAL = 2 * FPS
OPUS_RATE, OPUS_FRAME = 48_000, 960  # 20 ms


def encoder_name() -> str:
    if "libx264" not in av.codecs_available:
        raise SystemExit(
            "this PyAV has no libx264 encoder; the OBS-like publisher needs H.264 High"
            f" (available: {sorted(c for c in av.codecs_available if '264' in c)})"
        )
    return "libx264"


def pattern(index: int) -> np.ndarray:
    """A frame of a moving test pattern: drifting colour gradient plus a sweeping white bar."""
    x = np.arange(WIDTH, dtype=np.uint16)
    y = np.arange(HEIGHT, dtype=np.uint16)[:, None]
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[..., 0] = ((x + 4 * index) % 256).astype(np.uint8)
    frame[..., 1] = ((y + 2 * index) % 256).astype(np.uint8)
    frame[..., 2] = (((x[None, :] + y) // 4 + 8 * index) % 256).astype(np.uint8)
    bar = (index * 24) % WIDTH
    frame[:, bar : bar + 40] = 255
    return frame


def write_h264(path: Path, seconds: float) -> dict[str, object]:
    codec = cast(VideoCodecContext, av.CodecContext.create(encoder_name(), "w"))
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS, 1)
    codec.bit_rate = 2_500_000
    codec.options = {
        "preset": "veryfast",
        "profile": "high",
        "level": "3.1",
        "bf": "0",
        "g": str(KEYFRAME_INTERVAL),
        "x264-params": f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}"
        ":scenecut=0:repeat-headers=1",
    }
    frames = round(seconds * FPS)
    data = bytearray()
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(pattern(index), format="rgb24").reformat(
            format="yuv420p"
        )
        frame.pts = index
        for packet in codec.encode(frame):
            data += bytes(packet)
    for packet in codec.encode(None):
        data += bytes(packet)
    path.write_bytes(bytes(data))
    profiles = sps_profiles(bytes(data))
    if not profiles or any(p[0] != 100 for p in profiles):
        raise SystemExit(f"expected High profile (profile_idc 100) SPSs, got {profiles}")
    return {
        "path": str(path),
        "bytes": len(data),
        "frames": frames,
        "fps": FPS,
        "size": f"{WIDTH}x{HEIGHT}",
        "profile_level_id": "".join(f"{b:02x}" for b in profiles[0]),
        "sps_count": len(profiles),
    }


def sps_profiles(stream: bytes) -> list[tuple[int, int, int]]:
    """(profile_idc, constraint flags, level_idc) of every SPS in an Annex B stream."""
    found = []
    start = 0
    while (start := stream.find(b"\x00\x00\x01", start)) != -1:
        start += 3
        if start + 4 <= len(stream) and stream[start] & 0x1F == 7:
            found.append((stream[start + 1], stream[start + 2], stream[start + 3]))
    return found


def write_opus(path: Path, seconds: float) -> dict[str, object]:
    codec = cast(AudioCodecContext, av.CodecContext.create("libopus", "w"))
    codec.sample_rate = OPUS_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 64_000
    codec.time_base = Fraction(1, OPUS_RATE)
    packets: list[bytes] = []
    count = round(seconds * OPUS_RATE / OPUS_FRAME)
    for index in range(count):
        t = (np.arange(OPUS_FRAME) + index * OPUS_FRAME) / OPUS_RATE
        tone = (0.2 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone[None, :], 2, axis=0).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = OPUS_RATE
        frame.pts = index * OPUS_FRAME
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    with path.open("wb") as out:
        for packet in packets:
            out.write(len(packet).to_bytes(2, "big") + packet)
    return {"path": str(path), "packets": len(packets), "ms_per_packet": 20}


def make(out: Path, seconds: float = 4.0) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    return {
        "video": write_h264(out / "video.h264", seconds),
        "audio": write_opus(out / "audio.opus", seconds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    json.dump(make(args.out, args.seconds), sys.stdout)
    print()


if __name__ == "__main__":
    main()
