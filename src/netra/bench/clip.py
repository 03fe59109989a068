"""The clip the synthetic publisher loops: encoded and packetized once, at start.

A moving 1280x720 test pattern in VP8 (libvpx through PyAV) at 30 fps, ~2.5 Mbit/s, a keyframe
every 2 s, and a 48 kbit/s Opus tone: about 300 RTP packets a second, like a 720p30 camera.
The picture carries noise so that libvpx spends the bitrate instead of undershooting it.
Encoding takes a while, so the result is cached on disk by its parameters.
"""

from __future__ import annotations

import fractions
import hashlib
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms of Opus


@dataclass(frozen=True)
class VideoFrame:
    payloads: tuple[bytes, ...]  # RTP payloads, VP8 descriptor included
    keyframe: bool


@dataclass(frozen=True)
class Clip:
    width: int
    height: int
    fps: int
    video: tuple[VideoFrame, ...]
    audio: tuple[bytes, ...]  # one Opus packet per 20 ms

    @property
    def seconds(self) -> float:
        return len(self.video) / self.fps

    @property
    def video_bitrate(self) -> float:
        return sum(len(p) for f in self.video for p in f.payloads) * 8 / self.seconds

    @property
    def packets_per_second(self) -> float:
        video = sum(len(f.payloads) for f in self.video) / self.seconds
        return video + AUDIO_CLOCK / AUDIO_FRAME_SAMPLES


def _pattern(width: int, height: int, index: int, rng: Any) -> Any:
    import numpy as np

    x = np.arange(width, dtype=np.int32)
    y = np.arange(height, dtype=np.int32)[:, None]
    shift = index * 8
    luma = ((x + shift) % 256 + (y // 4) % 64).astype(np.uint8)
    # A bright box that sweeps across, and fine noise for libvpx to spend its bits on.
    box_x = (index * 16) % (width - 160)
    luma[200:360, box_x : box_x + 160] = 235
    luma = (luma.astype(np.int16) + rng.integers(-24, 24, size=luma.shape, dtype=np.int16)).clip(
        16, 235
    )
    frame = np.empty((height * 3 // 2, width), dtype=np.uint8)
    frame[:height] = luma
    frame[height:] = 128 + (index % 64)  # chroma planes drift slowly
    return frame


def _encode_video(width: int, height: int, fps: int, seconds: float, bitrate: int) -> list:
    import av
    import numpy as np
    from aiortc.codecs.vpx import Vp8Encoder

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate
    codec.gop_size = 2 * fps
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "kf-max-dist": str(2 * fps),
        "kf-min-dist": str(2 * fps),
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
        "error-resilient": "1",
        # Like a camera encoder: a keyframe of a few frames' worth, not a 140 kB burst.
        "max-intra-rate": "300",
    }
    packer = Vp8Encoder()
    rng = np.random.default_rng(7)
    frames: list[VideoFrame] = []
    total = int(seconds * fps)
    for index in range(total):
        image = av.VideoFrame.from_ndarray(_pattern(width, height, index, rng), format="yuv420p")
        image.pts = index
        image.time_base = codec.time_base
        for packet in codec.encode(image):
            payloads, _ = packer.pack(packet)
            frames.append(VideoFrame(tuple(payloads), bool(packet.is_keyframe)))
    for packet in codec.encode(None):
        payloads, _ = packer.pack(packet)
        frames.append(VideoFrame(tuple(payloads), bool(packet.is_keyframe)))
    return frames[:total]


def _encode_audio(seconds: float, bitrate: int) -> list[bytes]:
    import av
    import numpy as np

    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_CLOCK
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, AUDIO_CLOCK)
    codec.options = {"vbr": "off"}
    packets: list[bytes] = []
    total = int(seconds * AUDIO_CLOCK / AUDIO_FRAME_SAMPLES)
    for index in range(total):
        t = (np.arange(AUDIO_FRAME_SAMPLES) + index * AUDIO_FRAME_SAMPLES) / AUDIO_CLOCK
        tone = (0.3 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2)[None, :], format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = index * AUDIO_FRAME_SAMPLES
        packets.extend(bytes(p) for p in codec.encode(frame))
    return packets[:total]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "netra-bench"


def load_clip(
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seconds: float = 10.0,
    video_bitrate: int = 2_500_000,
    audio_bitrate: int = 48_000,
) -> Clip:
    """The clip for these parameters, from the cache or freshly encoded (~10-20 s for 720p)."""
    key = f"v1-{width}x{height}-{fps}-{seconds}-{video_bitrate}-{audio_bitrate}"
    path = _cache_dir() / f"clip-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pickle"
    if path.exists():
        try:
            with path.open("rb") as f:
                clip = pickle.load(f)
            if isinstance(clip, Clip):
                return clip
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass  # a stale or broken cache entry: encode again
    clip = Clip(
        width=width,
        height=height,
        fps=fps,
        video=tuple(_encode_video(width, height, fps, seconds, video_bitrate)),
        audio=tuple(_encode_audio(seconds, audio_bitrate)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as f:
        pickle.dump(clip, f)
    temporary.replace(path)
    return clip
