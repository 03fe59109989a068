"""Peer: the server's end of one RTCPeerConnection, publishing or subscribing.

A streamer's Peer accepts its offer and yields Publications; a viewer's Peer offers the
Publications it subscribes to and accepts the viewer's answer. A pull (one node of a cluster
taking a stream from another, netra.cluster) offers to receive and yields Publications from
the answer, as a streamer's Peer does from the offer. One negotiation at a time: the
signaling session that owns a Peer calls it from its single loop. Closing is idempotent and
closes the Peer's Subscriptions with it; its Publications are the stream's (docs/lifecycle.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import SessionDescription, candidate_from_sdp

from netra.errors import ProtocolError, UserError
from netra.media import aiortc_private
from netra.media.codecs import FORWARDED, forwardable, viewer_preferences
from netra.media.publication import Publication
from netra.media.redundancy import Redundancy
from netra.media.sdp import add_start_bitrate, announce_address
from netra.media.subscription import Subscription

logger = logging.getLogger(__name__)

# The order of media sections in every offer the server makes, and in a pull's: a pull's
# packets are then serialized as the viewers' are, in their group (the MID is in each packet).
KINDS = ("audio", "video")

StateListener = Callable[["Peer", str], None]


def negotiation_failed(reason: str) -> UserError:
    return UserError(reason, code="negotiation-failed")


def _parse(sdp: str) -> SessionDescription:
    try:
        return SessionDescription.parse(sdp)
    except Exception:
        raise ProtocolError("the offer is not valid SDP", code="invalid-sdp") from None


def _check_sends_media(offer: str) -> None:
    """A streamer's offer must send every media section it has (RFC 3264 §5.1)."""
    for section in _parse(offer).media:
        if section.kind in ("audio", "video") and section.direction not in ("sendonly", "sendrecv"):
            raise negotiation_failed(
                f"a streamer's {section.kind} must be sendonly or sendrecv, not {section.direction}"
            )


def _media_sections(offer: str) -> list[tuple[str, bool]]:
    """A player's audio and video sections in order: (kind, whether it can receive)."""
    return [
        (section.kind, section.direction in ("recvonly", "sendrecv"))
        for section in _parse(offer).media
        if section.kind in ("audio", "video")
    ]


def _no_common_codec(offer: str) -> UserError | None:
    """The error for an offer with a section in no codec Netra forwards, naming what was
    offered and what would do; None if every section has one."""
    for section in _parse(offer).media:
        if section.kind not in ("audio", "video"):
            continue
        offered = [
            c.mimeType.split("/")[1] for c in section.rtp.codecs if not _repairs(c.mimeType)
        ]
        if not any(forwardable(f"{section.kind}/{name}") for name in offered):
            accepted = " or ".join(
                mime.split("/")[1] for mime in FORWARDED if mime.startswith(section.kind)
            )
            names = ", ".join(offered) or "nothing"
            return UserError(
                f"the {section.kind} is offered in {names}, which Netra does not forward:"
                f" send {accepted}",
                code="unsupported-codec",
            )
    return None


def _repairs(mime_type: str) -> bool:
    """Codecs that only repair or carry others (RFC 4588, 2198, 5109)."""
    return mime_type.split("/")[1].lower() in ("rtx", "red", "ulpfec", "flexfec-03")


def describe_codec(codec: RTCRtpCodecParameters) -> str:
    profile = codec.parameters.get("profile-level-id")
    return f"{codec.mimeType}" + (f" (profile-level-id={profile})" if profile else "")


class Peer:
    def __init__(
        self,
        *,
        ice_servers: Iterable[RTCIceServer],
        connect_timeout: float,
        announced_ip: str | None,
        on_state: StateListener,
        copies: int = 1,
    ) -> None:
        """`copies`: datagrams sent of each packet to this peer (a pull across a lossy link;
        0: as the loss it reports needs, netra.media.redundancy)."""
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                # Always explicit: with none, aiortc would query a public STUN server.
                iceServers=list(ice_servers),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self.publications: list[Publication] = []
        self.subscriptions: list[Subscription] = []
        self.redundancy = Redundancy(copies)
        self.state = "new"
        self.closed = False
        self._announced_ip = announced_ip
        self._on_state = on_state
        self._held_candidates: list[object] = []
        self._has_remote = False
        self._connect_timer = asyncio.get_running_loop().call_later(
            connect_timeout, self._on_connect_timeout
        )
        self.pc.on("connectionstatechange", self._on_connection_state)

    # --- publishing: the streamer offers ------------------------------------------------

    async def accept_offer(self, sdp: str) -> str:
        """Apply a streamer's offer; return the answer to send. Creates the Publications."""
        _check_sends_media(sdp)
        try:
            await self._set_remote(sdp, "offer")
        except UserError as exc:
            raise _no_common_codec(sdp) or exc from None
        transceivers = self.pc.getTransceivers()
        kinds = Counter(t.kind for t in transceivers)
        if any(n > 1 for n in kinds.values()) or not transceivers:
            raise negotiation_failed("publish one audio and/or one video track")
        for transceiver in transceivers:
            if not aiortc_private.keep_first_codec(transceiver, forwardable):
                raise _no_common_codec(sdp) or negotiation_failed("no codec Netra forwards")
        await self._answer()
        for transceiver in transceivers:
            codecs = aiortc_private.negotiated_codecs(transceiver)
            self.publications.append(Publication(transceiver.kind, codecs[0], transceiver.receiver))
        await self._apply_held_candidates()
        return add_start_bitrate(self._local_sdp())

    # --- pulling: this server offers to receive another's stream ------------------------

    async def pull_offer(self) -> str:
        for kind in KINDS:
            self.pc.addTransceiver(kind, direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self._local_sdp()

    async def accept_pull_answer(self, sdp: str) -> None:
        """Apply the answer to `pull_offer`; a Publication for each track it sends."""
        await self._set_remote(sdp, "answer")
        for transceiver in self.pc.getTransceivers():
            codecs = aiortc_private.negotiated_codecs(transceiver)
            if transceiver.currentDirection == "recvonly" and codecs:
                if transceiver.kind == "audio":
                    aiortc_private.nack_audio(transceiver.receiver)
                else:
                    aiortc_private.no_bandwidth_estimate(transceiver.receiver)
                self.publications.append(
                    Publication(transceiver.kind, codecs[0], transceiver.receiver)
                )
        if not self.publications:
            raise negotiation_failed("the origin's answer sends no track")
        await self._apply_held_candidates()

    # --- subscribing: the server offers to a viewer -------------------------------------

    async def offer(self, publications: Iterable[Publication]) -> str:
        for publication in sorted(publications, key=lambda p: KINDS.index(p.kind)):
            transceiver = self.pc.addTransceiver(publication.kind, direction="sendonly")
            transceiver.setCodecPreferences(viewer_preferences(publication.codec))
            self.subscriptions.append(Subscription(publication, transceiver, self.redundancy))
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        return self._local_sdp()

    async def answer_subscriber(self, sdp: str, publications: Iterable[Publication]) -> str:
        """Answer a player's offer (WHEP) with these Publications, each in exactly the codec
        its publisher sends; a player that cannot receive that codec is told which it is."""
        unsent = {p.kind: p for p in publications}
        offered = _media_sections(sdp)
        if not any(kind in unsent and receives for kind, receives in offered):
            raise negotiation_failed(
                "the offer receives none of this stream's tracks"
                f" ({', '.join(unsent) or 'none'}): offer recvonly media"
            )
        # One transceiver per section, in the offer's order: with max-bundle, aiortc stops the
        # one shared transport when the offer's first section is not the first transceiver's.
        pending = []
        for kind, receives in offered:
            publication = unsent.pop(kind, None) if receives else None
            if publication is None:
                self.pc.addTransceiver(kind, direction="inactive")
                continue
            transceiver = self.pc.addTransceiver(kind, direction="sendonly")
            transceiver.setCodecPreferences(viewer_preferences(publication.codec))
            pending.append((publication, transceiver))
        chosen = [publication for publication, _ in pending]
        try:
            await self._set_remote(sdp, "offer")
        except UserError:
            codecs = ", ".join(describe_codec(p.codec) for p in chosen)
            raise UserError(
                f"the player cannot receive this stream's codecs: {codecs}",
                code="unsupported-codec",
            ) from None
        for publication, transceiver in pending:
            if transceiver.mid is not None:
                self.subscriptions.append(Subscription(publication, transceiver, self.redundancy))
        await self._answer()
        await self._apply_held_candidates()
        return self._local_sdp()

    async def accept_answer(self, sdp: str) -> None:
        await self._set_remote(sdp, "answer")
        await self._apply_held_candidates()

    # --- ICE ------------------------------------------------------------------------------

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled candidate (None: end-of-candidates), held until the remote
        description it belongs to is set."""
        if candidate:
            try:
                parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
            except Exception:
                raise ProtocolError(
                    f"unparseable ICE candidate {candidate[:80]!r}", code="invalid-message"
                ) from None
            parsed.sdpMid = sdp_mid
            parsed.sdpMLineIndex = sdp_mline_index if sdp_mid is None else None
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            item: object = parsed
        else:
            item = None
        if not self._has_remote:
            self._held_candidates.append(item)
            return
        await self._add(item)

    async def _add(self, item: object) -> None:
        try:
            await self.pc.addIceCandidate(item)  # type: ignore[arg-type]
        except Exception as exc:
            raise ProtocolError(f"ICE candidate refused: {exc}", code="invalid-message") from None

    async def _apply_held_candidates(self) -> None:
        held, self._held_candidates = self._held_candidates, []
        for item in held:
            await self._add(item)

    # --- internals ------------------------------------------------------------------------

    async def _set_remote(self, sdp: str, kind: str) -> None:
        if self.closed:
            raise negotiation_failed("the peer connection is closed")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:  # aiortc raises ValueError, OperationError, AssertionError…
            raise negotiation_failed(f"{kind} rejected: {exc or type(exc).__name__}") from None
        self._has_remote = True
        for transport in {t.receiver.transport for t in self.pc.getTransceivers()}:
            if transport is not None:  # None: a media section aiortc rejected
                aiortc_private.DirectReceive(transport)  # again for the same one: harmless

    async def _answer(self) -> None:
        """Answer the remote offer. aiortc accepts some offers it then cannot answer (a BUNDLE
        group naming a missing mid, two sections with one mid, no direction): those raise
        here, and are the offer's fault."""
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # AttributeError, ValueError… from inside aiortc
            raise negotiation_failed(
                f"the offer cannot be answered: {exc or type(exc).__name__}"
            ) from None

    def _local_sdp(self) -> str:
        sdp = self.pc.localDescription.sdp
        if self._announced_ip:
            sdp = announce_address(sdp, self._announced_ip)
        return sdp

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if self.closed or state == self.state:
            return
        self.state = state
        if state == "connected":
            self._connect_timer.cancel()
            for subscription in self.subscriptions:
                subscription.activate()
        self._on_state(self, state)

    def _on_connect_timeout(self) -> None:
        if not self.closed and self.state != "connected":
            self.state = "failed"
            self._on_state(self, "failed")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._connect_timer.cancel()
        for subscription in self.subscriptions:
            subscription.close()
        # Publications are left alone: they belong to the room's stream, which may carry on
        # from the streamer's next connection (Room.start_stream); the stream closes them.
        try:
            await self.pc.close()
        except Exception:  # aiortc fails to close a half-built connection (a bad offer's)
            logger.debug("closing a half-built peer connection failed", exc_info=True)
