"""Netra: a self-hosted WebRTC live-streaming server (SFU) on asyncio and aiortc."""

__version__ = "0.1.0"
