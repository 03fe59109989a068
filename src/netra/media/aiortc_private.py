"""Every private aiortc/aioice name Netra relies on, and nothing else.

aiortc has no public API for packet forwarding, so the SFU reaches into it here and only here
(see ../shared/notes/aiortc.md §1b–1c for what each name does and its history). The version is
pinned to aiortc 1.16; `check()` fails loudly at start-up and in the tests if a name moved.

Two process-wide, idempotent patches for publishers that are not browsers are made here too,
to be called once at start-up: `accept_h264_profiles()` (H.264 High/Main/baseline 1.3, as OBS
and FFmpeg offer it) and `tolerate_clients_without_candidates()` (OBS 30.2+ and FFmpeg offer
no ICE candidates). `unpatched()` gives back aiortc's original of a patched name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import aioice.candidate
import aioice.ice
import aiortc.codecs
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import pylibsrtp
from aiortc import (
    RTCIceTransport,
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate, RTCDtlsTransport
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtp import RtpPacket, is_rtcp
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from netra.media.codecs import (
    H264_PACKETIZATION_MODES,
    H264_PROFILE_LEVEL_IDS,
    h264_parameters,
    h264_variant,
)

logger = logging.getLogger(__name__)
_DTLS_CONNECTED = _DtlsState.CONNECTED
_RTP_FIELDS = struct.Struct("!HII")  # sequence number, timestamp, SSRC at byte offset 2
_SRTP_TRAILER = 16 + 128  # the most libsrtp may append (auth tag, MKI), as pylibsrtp allows

# (owner, attribute) pairs checked by check(); instance attributes are checked on a live object.
_CLASS_NAMES: tuple[tuple[type, str], ...] = (
    (RTCRtpReceiver, "_handle_rtp_packet"),
    (RTCRtpReceiver, "_handle_rtcp_packet"),
    (RTCRtpReceiver, "_send_rtcp_pli"),
    (RTCRtpSender, "_handle_rtcp_packet"),
    (RTCDtlsTransport, "_register_rtp_sender"),
    (RTCDtlsTransport, "_send_rtp"),
    (RTCDtlsTransport, "_handle_rtp_data"),
    (RTCDtlsTransport, "_handle_rtcp_data"),
    (aioice.ice.StunProtocol, "datagram_received"),
    (aioice.ice.Connection, "data_received"),
    (RTCDtlsTransport, "transport"),
    (aioice.ice.CandidatePair, "remote_addr"),
    (aioice.ice.Connection, "check_incoming"),
    (aioice.ice.Connection, "_end_remote_candidates"),
    (aioice.ice.Connection, "query_consent"),
    (RTCCertificate, "_create_ssl_context"),
)
_MODULE_NAMES: tuple[tuple[Any, str], ...] = (
    (aioice.ice, "get_host_addresses"),
    (aioice.ice, "asyncio"),
    (aiortc.codecs, "CODECS"),
    (aiortc.rtcpeerconnection, "find_common_codecs"),
    (aiortc.rtcpeerconnection, "filter_preferred_codecs"),
    (aiortc.rtcpeerconnection, "is_codec_compatible"),
)
_RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"
_RECEIVER_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_INSTANCE_NAMES: tuple[tuple[type, str], ...] = (
    (RTCRtpReceiver, _RECEIVER_JITTER_BUFFER),
    (RTCRtpReceiver, _RECEIVER_NACK_GENERATOR),
    (RTCRtpReceiver, _RECEIVER_BITRATE_ESTIMATOR),
    (RTCRtpSender, "_ssrc"),
    (RTCRtpTransceiver, "_codecs"),
    (RTCRtpTransceiver, "_headerExtensions"),
    (RTCDtlsTransport, "_tx_srtp"),
    (RTCDtlsTransport, "_state"),
    (RTCIceTransport, "_connection"),
    (aioice.ice.Connection, "_nominated"),
    (aioice.ice.Connection, "_protocols"),
    (RTCDtlsTransport, "_rx_srtp"),
    (pylibsrtp.Session, "_cdata"),
    (pylibsrtp.Session, "_buffer"),
    (pylibsrtp.Session, "_srtp"),
    (aioice.ice.CandidatePair, "protocol"),
    (aioice.ice.Connection, "_remote_candidates"),
    (aioice.ice.Connection, "_remote_candidates_end"),
    (aioice.ice.Connection, "_closing"),
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


class _PortRangeLoop:
    """The running loop as aioice's gathering sees it: host candidates bind a port in
    [low, high] (the next free one, round robin) where aioice asks for any port (0)."""

    def __init__(self, loop: Any, ports: _Ports) -> None:
        self._loop, self._ports = loop, ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, factory: Any, local_addr: Any = None, **kw: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        for port in self._ports.next_ports():
            try:
                return await self._loop.create_datagram_endpoint(
                    factory, local_addr=(local_addr[0], port), **kw
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {self._ports.low}-{self._ports.high}")


@dataclasses.dataclass
class _Ports:
    low: int
    high: int
    cursor: int = 0

    def next_ports(self) -> list[int]:
        count = self.high - self.low + 1
        start, self.cursor = self.cursor, (self.cursor + 1) % count
        return [self.low + (start + i) % count for i in range(count)]


class _AsyncioForAioice:
    """asyncio, as aioice.ice sees it once `bind_udp_ports` was called."""

    def __init__(self, ports: _Ports) -> None:
        self._ports = ports

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def get_running_loop(self) -> Any:
        return _PortRangeLoop(asyncio.get_running_loop(), self._ports)


def bind_udp_ports(low: int, high: int) -> None:
    """Make every ICE host candidate bind a UDP port in [low, high] (process-wide), so that
    a firewall rule or a container's port mapping can name them. aioice binds one port per
    peer connection and has no option for it: its module's asyncio is swapped for one whose
    loop picks the port."""
    aioice.ice.asyncio = _AsyncioForAioice(_Ports(low, high))  # type: ignore[assignment]


_ORIGINAL = "_netra_original"


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace `owner.name` with `make(original)`, once per process (idempotent)."""
    current = getattr(owner, name)
    if hasattr(current, _ORIGINAL):
        return
    replacement = make(current)
    setattr(replacement, _ORIGINAL, current)
    setattr(owner, name, replacement)


def unpatched(owner: Any, name: str) -> Any:
    """What `owner.name` was before Netra patched it (for tests that show why)."""
    current = getattr(owner, name)
    return getattr(current, _ORIGINAL, current)


def tolerate_clients_without_candidates() -> None:
    """Connect clients whose offer holds no ICE candidates, and checks without PRIORITY
    (process-wide, idempotent; call at start-up).

    OBS 30.2+, FFmpeg's WHIP muxer and some browser WHIP libraries offer no candidates, some
    with `a=end-of-candidates`, and never trickle: the server learns them from their checks
    (peer-reflexive, RFC 8445 §7.3.1.3). aioice takes end-of-candidates with no candidates as
    the end: it drops the component ("Components {1} have no candidate pairs") and connect()
    fails at once. Here such an end-of-candidates is ignored, so aioice keeps waiting for the
    client's checks; the Peer's connect timeout bounds the wait.

    A binding request without PRIORITY (older FFmpeg; RFC 8445 §7.1.1 requires it) made
    aioice raise KeyError while learning the client's address, so the check was lost; it
    is now learnt with the priority a peer-reflexive candidate gets by default.
    """
    _patch(aioice.ice.Connection, "_end_remote_candidates", _wait_for_peer_reflexive)
    _patch(aioice.ice.Connection, "check_incoming", _default_priority)


def receive_media_directly() -> None:
    """Let peers with a DirectReceive take their SRTP datagrams as they arrive (process-wide,
    idempotent; call at start-up). aioice first tries to parse every datagram as STUN, and
    RTP and RTCP never are one (RFC 7983: their first byte is 128-191, STUN's 0-3)."""
    _patch(aioice.ice.StunProtocol, "datagram_received", _media_first)


def _media_first(original: Callable[..., None]) -> Callable[..., None]:
    def datagram_received(self: aioice.ice.StunProtocol, data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            receiver = self.receiver
            direct = getattr(receiver, _DIRECT, None)
            if direct is None or not direct(data):
                receiver.data_received(data, self.local_candidate.component)
            return
        original(self, data, addr)

    return datagram_received


def no_consent_checks_after_close() -> None:
    """Never start consent checks on a closed ICE connection (process-wide, idempotent).

    When a connection is closed just as its checks succeed, aioice's connect() resumes after
    close() and starts the consent task anyway; with no pair left it then sleeps and wakes
    every 5 s for as long as the server runs: one task leaked per WHIP/WHEP session deleted
    at that moment."""
    _patch(aioice.ice.Connection, "query_consent", _unless_closing)


def _unless_closing(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def query_consent(self: aioice.ice.Connection) -> None:
        if self._closing:
            return
        await original(self)

    return query_consent


def _wait_for_peer_reflexive(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def _end_remote_candidates(self: aioice.ice.Connection) -> None:
        if not self._remote_candidates:
            self._remote_candidates_end = False  # still expecting: peer-reflexive ones
            logger.debug("no remote candidates at end-of-candidates: waiting for checks")
            return
        original(self)

    return _end_remote_candidates


def _default_priority(original: Callable[..., None]) -> Callable[..., None]:
    def check_incoming(
        self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any
    ) -> None:
        if "PRIORITY" not in message.attributes:
            message.attributes["PRIORITY"] = aioice.candidate.candidate_priority(
                protocol.local_candidate.component, "prflx"
            )
        original(self, message, addr, protocol)

    return check_incoming


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
    tap_rtcp(receiver, on_rtcp)


def tap_rtcp(receiver: RTCRtpReceiver, on_rtcp: Callable[[Any], None]) -> None:
    """See each RTCP packet about the receiver's track (sender reports) before aiortc does."""
    original = receiver._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        on_rtcp(packet)
        await original(packet)

    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def nack_audio(receiver: RTCRtpReceiver) -> None:
    """NACK lost audio packets as aiortc does video's (it gives audio no NACK generator):
    for a pull from another node, which answers from its history, so that Opus lost on the
    hop is repaired like video."""
    setattr(receiver, _RECEIVER_NACK_GENERATOR, aiortc.rtcrtpreceiver.NackGenerator())


def no_bandwidth_estimate(receiver: RTCRtpReceiver) -> None:
    """Stop estimating the bandwidth a video receiver gets (for REMB): a pull from another
    node has no use for the estimate, which was about a sixth of an edge's busy time in a
    profile (docs/scale-out.md)."""
    setattr(receiver, _RECEIVER_BITRATE_ESTIMATOR, None)


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    await receiver._send_rtcp_pli(media_ssrc)


def keep_first_codec(transceiver: RTCRtpTransceiver, usable: Callable[[str], bool]) -> bool:
    """Answer with one codec (and its RTX), the publisher's first that is `usable` (by MIME
    type), so that it sends exactly the codec we offer to viewers; False if none is.
    setCodecPreferences has no effect once the offer is parsed."""
    codecs = transceiver._codecs
    first = next((c for c in codecs if usable(c.mimeType)), None)
    if first is None:
        return False
    transceiver._codecs = [first] + [
        c
        for c in codecs
        if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == first.payloadType
    ]
    return True


def accept_h264_profiles() -> None:
    """Accept and answer H.264 as real encoders offer it (process-wide, idempotent; call at
    start-up, before any peer connection is made).

    aiortc lists H.264 only at 42001f and 42e01f, packetization-mode 1, and answers a
    matching offer with its own entry, so an offer of High or Main fails and one of baseline
    1.3 (42000d) is answered 42001f. Netra never decodes, so it adds every variant in
    `codecs.H264_PROFILE_LEVEL_IDS` x `H264_PACKETIZATION_MODES` to aiortc's codec list, and
    answers an offered variant with exactly that variant: the Publication's codec is what the
    publisher sends, and a viewer is offered it through setCodecPreferences. A viewer's answer
    may name another level of the same profile (browsers answer with the level they decode,
    RFC 6184 level-asymmetry-allowed); it is accepted as the codec Netra offered.
    """
    video = aiortc.codecs.CODECS["video"]
    h264 = [c for c in video if _is_h264(c)]
    present = {h264_variant(c.parameters) for c in h264}
    feedback = list(h264[0].rtcpFeedback) if h264 else []
    payload_type = max((c.payloadType or 0 for c in video), default=96) + 1
    for mode in H264_PACKETIZATION_MODES:
        for profile_level_id in H264_PROFILE_LEVEL_IDS:
            if (profile_level_id, mode) in present:
                continue
            if payload_type + 1 > 127:
                raise RuntimeError("no dynamic RTP payload type left for H.264")
            video += [
                RTCRtpCodecParameters(
                    mimeType="video/H264",
                    clockRate=90000,
                    payloadType=payload_type,
                    rtcpFeedback=list(feedback),
                    parameters=h264_parameters(profile_level_id, mode),
                ),
                RTCRtpCodecParameters(
                    mimeType="video/rtx",
                    clockRate=90000,
                    payloadType=payload_type + 1,
                    parameters={"apt": payload_type},
                ),
            ]
            payload_type += 2
    _patch(aiortc.rtcpeerconnection, "find_common_codecs", _answer_exact_h264)
    _patch(aiortc.rtcpeerconnection, "filter_preferred_codecs", _accept_any_h264_level)


def _is_h264(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> bool:
    return codec.mimeType.lower() == "video/h264"


def _answer_exact_h264(original: Callable[..., list[RTCRtpCodecParameters]]) -> Any:
    """aiortc pairs each offered codec with its first local codec of the same profile and
    packetization mode; prefer the local codec that is exactly the offered variant."""

    def find_common_codecs(
        local_codecs: list[RTCRtpCodecParameters], remote_codecs: list[RTCRtpCodecParameters]
    ) -> list[RTCRtpCodecParameters]:
        common = original(local_codecs, remote_codecs)  # deep copies, remote payload types
        exact: dict[tuple[str, str], RTCRtpCodecParameters] = {}
        for codec in local_codecs:
            if _is_h264(codec):
                exact.setdefault(h264_variant(codec.parameters), codec)
        offered = {c.payloadType: c for c in remote_codecs}
        for codec in common:
            remote = offered.get(codec.payloadType)
            if _is_h264(codec) and remote is not None and _is_h264(remote):
                local = exact.get(h264_variant(remote.parameters))
                if local is not None:
                    codec.parameters = dict(local.parameters)
        return common

    return find_common_codecs


def _accept_any_h264_level(original: Callable[..., list[RTCRtpCodecParameters]]) -> Any:
    """aiortc keeps only the codecs whose fmtp equals a preferred codec's; for H.264 let a
    codec that differs from a preferred one only in level stand for it (with its fmtp),
    when nothing matches that preferred codec exactly."""

    def filter_preferred_codecs(
        codecs: list[RTCRtpCodecParameters], preferred: list[RTCRtpCodecCapability]
    ) -> list[RTCRtpCodecParameters]:
        unmatched = [
            p
            for p in preferred
            if _is_h264(p) and not any(_is_h264(c) and c.parameters == p.parameters for c in codecs)
        ]
        if unmatched:
            codecs = [_as_preferred(c, unmatched) for c in codecs]
        return original(codecs, preferred)

    return filter_preferred_codecs


def _as_preferred(
    codec: RTCRtpCodecParameters, preferred: list[RTCRtpCodecCapability]
) -> RTCRtpCodecParameters:
    if _is_h264(codec):
        compatible: Any = aiortc.rtcpeerconnection.is_codec_compatible
        for wanted in preferred:
            if compatible(codec, wanted):  # same profile and packetization mode
                return dataclasses.replace(codec, parameters=dict(wanted.parameters))
    return codec


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


SENT, BLOCKED, FAILED = 0, 1, 2  # what a send did


class SrtpRoute:
    """Where one viewer's datagrams go and how they are protected: a socket of our own (a
    duplicate of the ICE socket's descriptor), the remote address, and the SRTP session aiortc
    negotiated. Sending on the duplicate with `sendto` used 51 % of a core at 100 viewers
    against 56 % through uvloop's transport (docs/benchmarks.md).

    A send that would block is dropped and reported (BLOCKED), never queued: the transport's
    buffer has no bound, and the caller resyncs the viewer at the next keyframe instead.
    """

    __slots__ = ("socket", "address", "session", "_sendto", "_srtp", "_cdata", "_buffer",
                 "_room", "_length")  # fmt: skip

    def __init__(self, sock: socket.socket, address: tuple[Any, ...], session: Any) -> None:
        self.socket = sock
        self.address = address
        self.session = session
        self._sendto = sock.sendto
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._room = len(session._cdata) - _SRTP_TRAILER
        self._length = _srtp_ffi.new("int *")

    @property
    def srtp_address(self) -> int:
        """The libsrtp session's address, for the native fan-out."""
        return int(_srtp_ffi.cast("uintptr_t", self._srtp))

    def rtp_rewritten(self, template: bytes, seq: int, timestamp: int, ssrc: int) -> int:
        """The per-packet-per-viewer send: copy the group's template straight into libsrtp's
        working buffer, patch sequence number, timestamp and SSRC there, protect in place and
        send: one copy in and one out, where pylibsrtp's `protect()` makes three."""
        size = len(template)
        if size > self._room:
            return FAILED
        buffer = self._buffer
        buffer[0:size] = template
        _RTP_FIELDS.pack_into(buffer, 2, seq, timestamp, ssrc)
        length = self._length
        length[0] = size
        if _srtp_lib.srtp_protect(self._srtp, self._cdata, length):
            return FAILED
        return self._send(buffer[0 : length[0]])

    def rtp(self, data: bytes) -> int:
        try:
            datagram = self.session.protect(data)
        except pylibsrtp.Error:
            return FAILED
        return self._send(datagram)

    def rtcp(self, data: bytes) -> int:
        try:
            datagram = self.session.protect_rtcp(data)
        except pylibsrtp.Error:
            return FAILED
        return self._send(datagram)

    def _send(self, datagram: bytes) -> int:
        try:
            self._sendto(datagram, self.address)
        except BlockingIOError:
            return BLOCKED
        except OSError:
            return FAILED
        return SENT

    def close(self) -> None:
        self.socket.close()


def srtp_route(dtls: RTCDtlsTransport) -> SrtpRoute | None:
    """The route of a connected DTLS transport's nominated ICE pair, or None before that."""
    if dtls._state is not _DTLS_CONNECTED:
        return None
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        return None
    try:
        fd = pair.protocol.transport.get_extra_info("socket").fileno()
        sock = socket.socket(fileno=os.dup(fd))
    except (OSError, AttributeError, ValueError):
        return None
    sock.setblocking(False)
    return SrtpRoute(sock, pair.remote_addr, dtls._tx_srtp)


def srtp_protect_address() -> int:
    """libsrtp's `srtp_protect`, as linked into pylibsrtp, for the native fan-out to call."""
    return int(_srtp_ffi.cast("uintptr_t", _srtp_ffi.addressof(_srtp_lib, "srtp_protect")))


_DIRECT = "_netra_direct_receive"
# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_TO_UNIX = 2_208_988_800


class DirectReceive:
    """Handle a peer's SRTP and SRTCP datagrams in aioice's datagram callback, as they arrive:
    unprotect, parse and hand them to aiortc's own RTP and RTCP handling at once, rather than
    through aioice's queue and the DTLS transport's reading task (a queue hop and a task
    switch per packet). What aiortc does with each packet is unchanged: its handlers are
    coroutines that do not wait in practice, so they are run to completion here. Until DTLS
    is connected, datagrams take aioice's queue as before."""

    __slots__ = ("_dtls",)

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        setattr(dtls.transport._connection, _DIRECT, self)

    def __call__(self, data: bytes) -> bool:
        dtls = self._dtls
        srtp = dtls._rx_srtp
        if srtp is None or dtls._state is not _DTLS_CONNECTED:
            return False
        try:
            if is_rtcp(data):
                work = dtls._handle_rtcp_data(srtp.unprotect_rtcp(data))
            else:
                arrival_ms = int((time.time() + _NTP_TO_UNIX) * 1000)  # aiortc's current_ms
                work = dtls._handle_rtp_data(srtp.unprotect(data), arrival_time_ms=arrival_ms)
        except pylibsrtp.Error:
            return True  # dropped, as aiortc drops what does not unprotect
        run_to_completion(work)
        return True


def run_to_completion(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine now; should it wait after all, finish it as a Task would."""

    def step(_: object = None) -> None:
        try:
            waiting = work.send(None)
        except StopIteration:
            return
        except Exception:
            logger.exception("handling a received packet failed")
            return
        if waiting is None:  # a bare yield: go on at the loop's next turn
            asyncio.get_running_loop().call_soon(step)
        else:
            waiting._asyncio_future_blocking = False
            waiting.add_done_callback(step)

    step()


class DirectSend:
    """Protect and send datagrams on a viewer's DTLS transport without aiortc's four-level
    coroutine chain (fan-out.md (c+)). Synchronous: no await per packet. The route is looked
    up once per connection, not per packet, and again if the transport is reconnected."""

    __slots__ = ("_dtls", "route")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self.route: SrtpRoute | None = None

    def live_route(self) -> SrtpRoute | None:
        route = self.route
        if route is None or self._dtls._state is not _DTLS_CONNECTED:
            self.close()
            route = self.route = srtp_route(self._dtls)
        return route

    def rtp_rewritten(self, template: bytes, seq: int, timestamp: int, ssrc: int) -> int:
        route = self.route  # live_route(), inlined: this runs per packet per viewer
        if route is None or self._dtls._state is not _DTLS_CONNECTED:
            route = self.live_route()
            if route is None:
                return FAILED
        return route.rtp_rewritten(template, seq, timestamp, ssrc)

    def rtp(self, data: bytes) -> int:
        route = self.live_route()
        return FAILED if route is None else route.rtp(data)

    def rtcp(self, data: bytes) -> int:
        route = self.live_route()
        return FAILED if route is None else route.rtcp(data)

    def close(self) -> None:
        if self.route is not None:
            self.route.close()
            self.route = None


# --- DTLS --------------------------------------------------------------------------------


def dtls_context(certificate: RTCCertificate) -> Any:
    """The pyOpenSSL context aiortc's DTLS transport makes for `certificate`."""
    return certificate._create_ssl_context(SRTP_PROFILES)


# --- The load tool's side (netra bench): count packets without aiortc's receive path ---------


def tap_datagrams(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None]) -> None:
    """Hand every SRTP (not SRTCP) datagram arriving on this transport's ICE sockets to
    `on_rtp`, still encrypted, instead of to aiortc; STUN, DTLS and RTCP go on as before.
    Call it once the local description is set (the sockets exist then)."""
    for protocol in dtls.transport._connection._protocols:
        original = protocol.datagram_received

        def datagram_received(data: Any, addr: Any, original: Any = original) -> None:
            # RFC 7983 demux: 128-191 is RTP or RTCP; RTCP packet types are 192-223.
            if 127 < data[0] < 192 and not 191 < data[1] < 224:
                on_rtp(data)
            else:
                original(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:  # room for a burst while the load generator is busy
            force = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may exceed rmem_max
            for option in (force, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
                    break
                except OSError:
                    continue


def nominated_protocol(dtls: RTCDtlsTransport) -> Any:
    """The aioice protocol (socket) of the transport's nominated ICE pair, or None."""
    pair = dtls.transport._connection._nominated.get(1)
    return None if pair is None else pair.protocol


def has_srtp_keys(dtls: RTCDtlsTransport) -> bool:
    return getattr(dtls, "_rx_srtp", None) is not None


def unprotect_rtp(dtls: RTCDtlsTransport, data: bytes) -> bytes:
    return bytes(dtls._rx_srtp.unprotect(data))
