"""SignalingSession: one WebSocket, one client, one loop.

Everything that happens to a client (its frames, its room's events, its peer connection's
state changes) goes into one inbox and is handled in order by `run()`, so there is exactly one
negotiation at a time and no locks. After `join`, room and role come from the session, never
from a message. Errors are mapped to wire errors here and only here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCIceServer

from netra.config import Config
from netra.errors import InternalError, NetraError, ProtocolError
from netra.media.peer import Peer
from netra.observability.log import ParticipantLog
from netra.rooms.participant import Participant, Role
from netra.rooms.registry import RoomRegistry
from netra.rooms.room import Room
from netra.signaling import messages as m

logger = logging.getLogger("netra.session")

MAX_ERRORS = 10
MAX_PENDING_FRAMES = 256
MAX_OUTBOX = 256
FLUSH_SECONDS = 1.0
REPLACED_CLOSE_CODE = 4001

Send = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[int, str], Coroutine[Any, Any, None]]

_CLOSED = object()


class SignalingSession:
    def __init__(
        self,
        *,
        config: Config,
        registry: RoomRegistry,
        ice_servers: list[RTCIceServer],
        send: Send,
        close: Close,
    ) -> None:
        self.client_id = secrets.token_hex(6)
        self.log = ParticipantLog(logger, self.client_id)
        self._config = config
        self._registry = registry
        self._ice_servers = ice_servers
        self._send_text = send
        self._close_socket = close
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._pending_frames = 0
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=MAX_OUTBOX)
        self.errors = 0
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.peer: Peer | None = None
        self._awaiting_answer = False
        self._had_peer = False  # since join: late answers/candidates of a closed peer are moot
        self._close_with: tuple[int, str] | None = None

    # --- feeding the loop (called from the socket reader, rooms and peers) ----------------

    def receive(self, raw: str | bytes) -> None:
        self._pending_frames += 1
        if self._pending_frames > MAX_PENDING_FRAMES:
            self._abort(1008, "too many unprocessed messages")
            return
        self._inbox.put_nowait(raw)

    def socket_closed(self) -> None:
        self._inbox.put_nowait(_CLOSED)

    def _post(self, event: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._inbox.put_nowait(event)

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        try:
            while not self._close_with:
                item = await self._inbox.get()
                if item is _CLOSED:
                    break
                if isinstance(item, str | bytes):
                    self._pending_frames -= 1
                    await self._handle_frame(item)
                else:
                    await self._guarded(item)  # type: ignore[arg-type]
        finally:
            await self._leave("streamer-disconnected")
            await self._flush(writer)
            if self._close_with:
                await self._close_socket(*self._close_with)
            self.log.info("disconnected")

    async def _write_loop(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self._send_text(text)
            except (ConnectionError, RuntimeError):
                return

    async def _flush(self, writer: asyncio.Task[None]) -> None:
        """Let the last messages (say, `too-many-errors`) go out, but never wait long."""
        try:
            self._outbox.put_nowait(None)
            await asyncio.wait_for(asyncio.shield(writer), FLUSH_SECONDS)
        except (asyncio.QueueFull, TimeoutError):
            pass
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    async def _send_now(self, message: dict[str, object]) -> None:
        self._send(message)

    def _send(self, message: dict[str, object]) -> None:
        try:
            self._outbox.put_nowait(json.dumps(message))
        except asyncio.QueueFull:
            # A client that does not read its signaling is gone; it must not hold the room.
            self._abort(1008, "client not reading")

    def _abort(self, code: int, reason: str) -> None:
        """Stop handling this client now; the loop leaves the room and closes the socket."""
        if not self._close_with:
            self.log.warning("closing connection: %s", reason)
            self._close_with = (code, reason)
            self._inbox.put_nowait(_CLOSED)

    async def _handle_frame(self, raw: str | bytes) -> None:
        try:
            message = m.parse(raw)
        except ProtocolError as exc:
            self._refuse(exc, m.peek_type(raw))
            return
        await self._guarded(lambda: self._dispatch(message), ref=message.type)

    async def _guarded(
        self, action: Callable[[], Coroutine[Any, Any, None]], ref: str | None = None
    ) -> None:
        try:
            await action()
        except NetraError as exc:
            self._refuse(exc, ref)
        except Exception:
            self.log.exception("internal error handling %s", ref or "an event")
            self._send(InternalError("internal server error").to_wire(ref))

    def _refuse(self, exc: NetraError, ref: str | None) -> None:
        self.errors += 1
        self.log.info("refused %s: %s %s", ref or "frame", exc.code, exc.message)
        if self.errors >= MAX_ERRORS:
            self._send(
                ProtocolError(
                    f"{self.errors} errors on this connection", code="too-many-errors"
                ).to_wire(ref)
            )
            self._abort(1008, "too many errors")
            return
        self._send(exc.to_wire(ref))

    # --- client messages -----------------------------------------------------------------

    async def _dispatch(self, message: m.ClientMessage) -> None:
        if isinstance(message, m.Ping):
            self._send(m.pong(message.id))
            return
        if isinstance(message, m.Join):
            await self._join(message)
            return
        _, participant = self._bound(message)
        if isinstance(message, m.Offer):
            await self._publish(participant, message.sdp)
        elif isinstance(message, m.Answer):
            await self._accept_answer(participant, message.sdp)
        elif isinstance(message, m.Candidate):
            await self._add_candidate(message)
        elif isinstance(message, m.Leave):
            await self._leave("streamer-left")

    def _bound(self, message: m.ClientMessage) -> tuple[Room, Participant]:
        if self.room is None or self.participant is None:
            raise ProtocolError(f"send join before {message.type}", code="not-joined")
        claimed = getattr(message, "roomId", None)
        if claimed is not None and claimed != self.room.id:
            raise ProtocolError(
                f"this connection joined room {self.room.id!r}, not {claimed!r}",
                code="wrong-room",
            )
        return self.room, self.participant

    async def _join(self, message: m.Join) -> None:
        if self.participant is not None:
            raise ProtocolError("already joined; send leave first", code="already-joined")
        membership = _Membership(self)
        participant = Participant(
            self.client_id, Role(message.role), listener=membership,
            resume_key=secrets.token_urlsafe(18),
        )  # fmt: skip
        membership.participant = participant
        room = self._registry.join(message.roomId, participant, resume_key=message.resumeKey)
        self.room, self.participant = room, participant
        self._had_peer = False
        self.log.bind(room.id, participant.role)
        self.log.info("joined (live=%s, viewers=%d)", room.live, len(room.viewers))
        self._send(
            m.joined(
                self.client_id,
                room.id,
                participant.role,
                [server.to_wire() for server in self._config.ice_servers],
                room.live,
                len(room.viewers),
                participant.resume_key,
            )
        )
        if participant.role is Role.VIEWER and room.live:
            self._post(self._on_stream_started)

    async def _publish(self, participant: Participant, sdp: str) -> None:
        if participant.role is not Role.STREAMER:
            raise ProtocolError("viewers answer the server's offer", code="wrong-role")
        if self.peer is not None:
            raise ProtocolError("already publishing; send leave first", code="out-of-order")
        peer = self._new_peer()
        try:
            answer = await peer.accept_offer(sdp)
        except BaseException:
            await self._close_peer()
            raise
        self._send(m.sdp_message("answer", answer))
        self.log.info(
            "answered the streamer's offer (%s)",
            ", ".join(p.codec.mimeType for p in peer.publications),
        )

    async def _accept_answer(self, participant: Participant, sdp: str) -> None:
        if participant.role is not Role.VIEWER:
            raise ProtocolError("the server answers a streamer; it never offers", code="wrong-role")
        if self.peer is None or not self._awaiting_answer:
            if self._had_peer:
                return  # an answer to an offer whose stream has since ended
            raise ProtocolError("no offer is waiting for an answer", code="out-of-order")
        self._awaiting_answer = False
        try:
            await self.peer.accept_answer(sdp)
        except BaseException:
            await self._close_peer()
            raise

    async def _add_candidate(self, message: m.Candidate) -> None:
        if self.peer is None:
            if self._had_peer:
                return  # trickle that raced the end of its peer connection
            raise ProtocolError("no peer connection yet: send offer first", code="out-of-order")
        init = message.candidate
        if message.is_end_of_candidates or init is None:
            await self.peer.add_candidate(None, None, None)
        else:
            await self.peer.add_candidate(init.candidate, init.sdpMid, init.sdpMLineIndex)

    async def _leave(self, reason: str) -> None:
        """Leave the room (a `leave`, or the socket closing). Idempotent."""
        room, participant = self.room, self.participant
        if room is None or participant is None:
            return
        self.room = self.participant = None
        try:
            if participant.role is Role.STREAMER and room.live:
                room.end_stream(participant, reason)
                # Said now: the room's own notice is for a participant we no longer are.
                self._send(m.stream_ended(reason))
            self._registry.leave(room, participant)
            self.log.info("left")
        finally:
            self.log.bind("-", "-")
            await self._close_peer()

    # --- room and peer events ------------------------------------------------------------

    async def _on_stream_started(self) -> None:
        room = self.room
        if room is None or not room.live or self.participant is None:
            return
        if self.participant.role is not Role.VIEWER:
            return
        await self._close_peer()
        self._send(m.stream_started())
        peer = self._new_peer()
        offer = await peer.offer(room.publications)
        self._awaiting_answer = True
        self._send(m.sdp_message("offer", offer))
        self.log.info("offered the stream")

    async def _on_stream_ended(self, reason: str) -> None:
        if self.participant is None:
            return
        if self.participant.role is Role.VIEWER:
            await self._close_peer()
        self._send(m.stream_ended(reason))

    async def _on_replaced(self) -> None:
        """This client re-joined from a new connection; the registry already removed us."""
        self.room = self.participant = None
        self.log.info("replaced by a newer connection of the same client")
        self.log.bind("-", "-")
        await self._close_peer()
        self._send(
            ProtocolError(
                "this client joined again from another connection", code="replaced"
            ).to_wire()
        )
        self._abort(REPLACED_CLOSE_CODE, "replaced")

    def _new_peer(self) -> Peer:
        self.peer = Peer(
            ice_servers=self._ice_servers,
            connect_timeout=self._config.connect_timeout,
            announced_ip=self._config.announced_ip,
            on_state=lambda peer, state: self._post(lambda: self._on_peer_state(peer, state)),
        )
        self._had_peer = True
        return self.peer

    async def _on_peer_state(self, peer: Peer, state: str) -> None:
        if peer is not self.peer:
            return  # a closed peer's late event
        self.log.info("peer connection %s", state)
        participant, room = self.participant, self.room
        if participant is None or room is None:
            return
        if state == "connected" and participant.role is Role.STREAMER:
            room.start_stream(participant, peer.publications)
        elif state in ("failed", "closed"):
            if participant.role is Role.STREAMER:
                if room.live:
                    room.end_stream(participant, "streamer-failed")  # tells this session too
                else:
                    self._send(m.stream_ended("streamer-failed"))
            await self._close_peer()
            if participant.role is Role.VIEWER and room.live:
                self._post(self._on_stream_started)  # offer again on a new peer connection

    async def _close_peer(self) -> None:
        peer, self.peer = self.peer, None
        self._awaiting_answer = False
        if peer is not None:
            await peer.close()


class _Membership:
    """A session's ear in one room (the ParticipantListener). Room events arrive here and are
    queued into the session's loop; there, an event for a participant the session no longer
    is (it left, or joined again) is dropped."""

    def __init__(self, session: SignalingSession) -> None:
        self._session = session
        self.participant: Participant | None = None

    def _post(self, handler: Callable[[], Coroutine[Any, Any, None]]) -> None:
        session, participant = self._session, self.participant

        async def if_still_current() -> None:
            if participant is not None and session.participant is participant:
                await handler()

        session._post(if_still_current)

    def stream_started(self, room: Room) -> None:
        self._post(self._session._on_stream_started)

    def stream_ended(self, reason: str) -> None:
        self._post(lambda: self._session._on_stream_ended(reason))

    def viewers_changed(self, count: int) -> None:
        self._post(lambda: self._session._send_now(m.viewers(count)))

    def replaced(self) -> None:
        self._post(self._session._on_replaced)
