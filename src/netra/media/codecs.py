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
