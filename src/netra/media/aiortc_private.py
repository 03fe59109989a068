"""Every private aiortc/aioice name Netra relies on, and nothing else.

aiortc has no public API for packet forwarding, so the SFU reaches into it here and only here
(see ../shared/notes/aiortc.md §1b–1c for what each name does and its history). The version is
pinned to aiortc 1.16; `check()` fails loudly at start-up and in the tests if a name moved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import aioice.ice
from aiortc import RTCIceTransport, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

# (owner, attribute) pairs checked by check(); instance attributes are checked on a live object.
_CLASS_NAMES: tuple[tuple[type, str], ...] = (
    (RTCRtpReceiver, "_handle_rtp_packet"),
    (RTCRtpReceiver, "_handle_rtcp_packet"),
    (RTCRtpReceiver, "_send_rtcp_pli"),
    (RTCRtpSender, "_handle_rtcp_packet"),
    (RTCDtlsTransport, "_register_rtp_sender"),
    (RTCDtlsTransport, "_send_rtp"),
    (RTCDtlsTransport, "transport"),
    (aioice.ice.CandidatePair, "remote_addr"),
)
_MODULE_NAMES: tuple[tuple[Any, str], ...] = ((aioice.ice, "get_host_addresses"),)
_RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_INSTANCE_NAMES: tuple[tuple[type, str], ...] = (
    (RTCRtpReceiver, _RECEIVER_JITTER_BUFFER),
    (RTCRtpSender, "_ssrc"),
    (RTCRtpTransceiver, "_codecs"),
    (RTCRtpTransceiver, "_headerExtensions"),
    (RTCDtlsTransport, "_tx_srtp"),
    (RTCDtlsTransport, "_state"),
    (RTCIceTransport, "_connection"),
    (aioice.ice.Connection, "_nominated"),
    (aioice.ice.CandidatePair, "protocol"),
)
# Set outside __init__ (in connection_made), so checked by name in the method's code.
_METHOD_NAMES: tuple[tuple[Any, str, str], ...] = (
    (aioice.ice.StunProtocol, "connection_made", "transport"),
)


class PrivateApiMissing(RuntimeError):
    pass


def check() -> None:
    """Raise PrivateApiMissing naming every private name that this aiortc lacks."""
    missing = [
        f"{owner.__name__}.{name}" for owner, name in _CLASS_NAMES if not hasattr(owner, name)
    ]
    missing += [f"{mod.__name__}.{name}" for mod, name in _MODULE_NAMES if not hasattr(mod, name)]
    # Instance attributes: look for the assignment in each constructor's code.
    for owner, name in _INSTANCE_NAMES:
        if name not in vars(owner)["__init__"].__code__.co_names:
            missing.append(f"{owner.__name__}.{name}")
    for owner, method, name in _METHOD_NAMES:
        if name not in vars(owner)[method].__code__.co_names:
            missing.append(f"{owner.__name__}.{name}")
    if missing:
        raise PrivateApiMissing(
            "aiortc internals that Netra's forwarder needs are missing: " + ", ".join(missing)
        )


# --- ICE candidates -----------------------------------------------------------------------


def offer_host_addresses(addresses: Iterable[str]) -> None:
    """Make aioice gather host candidates on exactly these addresses (process-wide).

    aioice picks the host's own addresses and never loopback; tests need 127.0.0.1 only.
    """
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


# --- The publisher side: tap packets after RTX unwrapping and NACK handling ----------------


class _PacketTap:
    """Stands in for the receiver's jitter buffer: every packet that reaches it has been
    RTX-unwrapped and fed to the NACK generator and RTCP statistics; we forward it instead of
    reassembling frames, so the decoder thread stays idle."""

    __slots__ = ("_on_packet",)

    def __init__(self, on_packet: Callable[[RtpPacket], None]) -> None:
        self._on_packet = on_packet

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._on_packet(packet)
        return False, None


def tap_receiver(
    receiver: RTCRtpReceiver,
    on_packet: Callable[[RtpPacket], None],
    on_rtcp: Callable[[Any], None],
) -> None:
    setattr(receiver, _RECEIVER_JITTER_BUFFER, _PacketTap(on_packet))
    original = receiver._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        on_rtcp(packet)
        await original(packet)

    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    await receiver._send_rtcp_pli(media_ssrc)


def keep_first_codec(transceiver: RTCRtpTransceiver) -> None:
    """Answer with one codec (and its RTX) so that the publisher sends exactly the codec we
    offer to viewers. setCodecPreferences has no effect once the offer is parsed."""
    codecs = transceiver._codecs
    first = next((c for c in codecs if not c.mimeType.lower().endswith("/rtx")), None)
    if first is None:
        return
    transceiver._codecs = [first] + [
        c
        for c in codecs
        if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == first.payloadType
    ]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    return list(transceiver._codecs)


def negotiated_header_extensions(transceiver: RTCRtpTransceiver) -> list[Any]:
    return list(transceiver._headerExtensions)


# --- The viewer side: a sender that aiortc registers but never drives ----------------------


def silence_sender(sender: RTCRtpSender, on_rtcp: Callable[[Any], None]) -> None:
    """Keep aiortc's RTCRtpSender from sending anything itself (its SRs would carry NTP=0 for
    our SSRC) while still routing the viewer's RTCP for that SSRC to `on_rtcp`."""

    async def send(parameters: Any) -> None:
        sender.transport._register_rtp_sender(sender, parameters)

    async def handle_rtcp(packet: Any) -> None:
        on_rtcp(packet)

    sender.send = send  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def sender_ssrc(sender: RTCRtpSender) -> int:
    return int(sender._ssrc)


class DirectSend:
    """Protect and send one datagram on a viewer's DTLS transport without aiortc's
    four-level coroutine chain (fan-out.md (c+)). Synchronous: no await per packet."""

    __slots__ = ("_dtls",)

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls

    def _pair(self) -> Any:
        if self._dtls._state.name != "CONNECTED":
            return None
        return self._dtls.transport._connection._nominated.get(1)

    def rtp(self, data: bytes) -> bool:
        pair = self._pair()
        if pair is None:
            return False
        pair.protocol.transport.sendto(self._dtls._tx_srtp.protect(data), pair.remote_addr)
        return True

    def rtcp(self, data: bytes) -> bool:
        pair = self._pair()
        if pair is None:
            return False
        pair.protocol.transport.sendto(self._dtls._tx_srtp.protect_rtcp(data), pair.remote_addr)
        return True
