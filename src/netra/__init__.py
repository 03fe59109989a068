"""Netra: a self-hosted WebRTC live-streaming server (SFU) on asyncio and aiortc."""

# Before anything imports `cryptography` (aiortc, PyJWT): FFmpeg's DTLS certificate needs a
# group that OpenSSL only takes from its configuration at that import (media/dtls.py).
from netra.media.dtls import configure_openssl

configure_openssl()

__version__ = "0.1.0"
