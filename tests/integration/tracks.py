"""Synthetic media for test publishers, and what a test viewer measures on decoded frames.

The video is a flat colour with a white bar that moves 8 px a frame and, along the top, the
frame number as 16 black/white blocks, so a viewer can tell frames apart, see motion and tell
two publishers apart by colour and size. The audio is a sine tone. Both pace themselves in real
time the way aiortc's VideoStreamTrack/AudioStreamTrack do: pts counts from the first frame and
each frame waits until its wall-clock time.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

COUNTER_BITS = 16
BAR_WIDTH = 16
BAR_STEP = 8


class TestPatternTrack(VideoStreamTrack):
    """A moving test pattern of a given size and background colour (RGB)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, width: int = 320, height: int = 240, colour: tuple[int, int, int] = (30, 90, 200)
    ) -> None:
        super().__init__()
        if width % COUNTER_BITS or width < 2 * BAR_WIDTH or height < width // COUNTER_BITS * 2:
            raise ValueError(f"unsupported test pattern size {width}x{height}")
        self.width = width
        self.height = height
        self.colour = colour
        self.frames_sent = 0
        self._background = np.empty((height, width, 3), dtype=np.uint8)
        self._background[:, :] = colour
        # Cleared: no frame comes (a camera unplugged, an encoder stalled), RTCP goes on.
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def recv(self) -> VideoFrame:
        await self.flowing.wait()
        pts, time_base = await self.next_timestamp()
        pixels = render_pattern(self._background, self.frames_sent)
        frame = VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        self.frames_sent += 1
        return frame


def render_pattern(background: np.ndarray, index: int) -> np.ndarray:
    pixels = background.copy()
    height, width, _ = pixels.shape
    x = (index * BAR_STEP) % (width - BAR_WIDTH)
    block = width // COUNTER_BITS
    pixels[block * 2 :, x : x + BAR_WIDTH] = 255
    for bit in range(COUNTER_BITS):
        value = 255 if (index >> bit) & 1 else 0
        pixels[:block, bit * block : (bit + 1) * block] = value
    return pixels


@dataclass(frozen=True)
class VideoSample:
    """What a viewer learnt from one decoded video frame."""

    arrival: float  # time.time()
    width: int
    height: int
    counter: int  # the frame number drawn by TestPatternTrack
    bar_x: int  # where the moving bar is
    background: tuple[int, int, int]  # median colour, RGB


def measure_video(frame: VideoFrame) -> VideoSample:
    """Read the pattern back, cheaply (about 0.4 ms at 320x240): this runs on the event loop
    that the server shares, once per decoded frame."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    width, height = frame.width, frame.height
    plane = frame.planes[0]
    luma = np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)[:, :width]
    block = width // COUNTER_BITS
    inset = block // 4  # the middle of each block, away from edges that the encoder smears
    strip = luma[inset : block - inset, : block * COUNTER_BITS]
    strip = strip.reshape(block - 2 * inset, COUNTER_BITS, block)[:, :, inset : block - inset]
    bits = strip.mean(axis=(0, 2)) > 128
    counter = sum(1 << bit for bit, on in enumerate(bits) if on)
    bar_x = int(np.argmax(luma[block * 2 :].mean(axis=0)))
    small = frame.reformat(width=max(width // 8, 2), height=max(height // 8, 2), format="rgb24")
    below = small.to_ndarray()[block * 2 // 8 + 1 :].reshape(-1, 3)
    background = np.median(below, axis=0)
    return VideoSample(
        arrival=time.time(),
        width=width,
        height=height,
        counter=counter,
        bar_x=bar_x,
        background=(int(background[0]), int(background[1]), int(background[2])),
    )


class ToneTrack(MediaStreamTrack):
    """A sine tone, mono s16, in frames of `ptime` seconds."""

    kind = "audio"

    def __init__(
        self, frequency: float = 440.0, sample_rate: int = 48000, ptime: float = 0.020
    ) -> None:
        super().__init__()
        self.frequency = frequency
        self.sample_rate = sample_rate
        self.samples = int(sample_rate * ptime)
        self.time_base = fractions.Fraction(1, sample_rate)
        self.frames_sent = 0
        self._start: float | None = None
        self._pts = 0
        self.flowing = asyncio.Event()  # as TestPatternTrack's
        self.flowing.set()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.flowing.is_set():
            await self.flowing.wait()
            self._start, self._pts = None, 0  # a tone that starts again, not a burst
        if self._start is None:
            self._start = time.time()
        else:
            self._pts += self.samples
            await asyncio.sleep(self._start + self._pts / self.sample_rate - time.time())
        t = (self._pts + np.arange(self.samples)) / self.sample_rate
        wave = (0.3 * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.pts = self._pts
        frame.sample_rate = self.sample_rate
        frame.time_base = self.time_base
        self.frames_sent += 1
        return frame


@dataclass(frozen=True)
class AudioSample:
    arrival: float
    sample_rate: int
    samples: int
    rms: float  # of the first channel, in full-scale units (0..1)


def measure_audio(frame: AudioFrame) -> AudioSample:
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        first = data[0]
    else:
        first = data.reshape(-1, channels)[:, 0] if channels > 1 else data.reshape(-1)
    scale = 32768.0 if first.dtype == np.int16 else 1.0
    rms = float(np.sqrt(np.mean((first.astype(np.float64) / scale) ** 2))) if first.size else 0.0
    return AudioSample(
        arrival=time.time(), sample_rate=frame.sample_rate, samples=frame.samples, rms=rms
    )
