"""SignalingSession: one WebSocket, one client: the WebSocket's adapter over an Agent.

Frames go into one inbox and are handled in order by `run()`; `join` makes the client's agent
(netra.agents), which owns the participant lifecycle, and later messages are routed to it.
After `join`, room and role come from the session, never from a message. What the agent says
goes out through a bounded outbox; NetraErrors become `error` messages (netra.errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from netra.agents.agent import Agent, AgentContext
from netra.agents.publisher import PublisherAgent
from netra.agents.viewer import ViewerAgent
from netra.errors import WS_CLOSE_CODE, InternalError, NetraError, ProtocolError
from netra.observability.log import ParticipantLog
from netra.rooms.participant import Participant, Role
from netra.rooms.room import Room
from netra.signaling import messages as m

logger = logging.getLogger("netra.session")

MAX_ERRORS = 10
MAX_PENDING_FRAMES = 256
MAX_OUTBOX = 256
FLUSH_SECONDS = 1.0

Send = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[int, str], Coroutine[Any, Any, None]]

_CLOSED = object()


class SignalingSession:
    def __init__(self, *, context: AgentContext, send: Send, close: Close) -> None:
        self._own_log = ParticipantLog(logger, secrets.token_hex(6))
        self.log = self._own_log
        self._context = context
        self._send_text = send
        self._close_socket = close
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._pending_frames = 0
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=MAX_OUTBOX)
        self.errors = 0
        self.agent: Agent | None = None
        self._close_with: tuple[int, str] | None = None

    # --- feeding the loop (called from the socket reader, rooms and peers) ----------------

    def receive(self, raw: str | bytes) -> None:
        self._pending_frames += 1
        if self._pending_frames > MAX_PENDING_FRAMES:
            self._abort(WS_CLOSE_CODE["not-reading"], "too many unprocessed messages")
            return
        self._inbox.put_nowait(raw)

    def socket_closed(self) -> None:
        self._inbox.put_nowait(_CLOSED)

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        try:
            while not self._close_with:
                item = await self._inbox.get()
                if not isinstance(item, str | bytes):
                    break  # _CLOSED
                self._pending_frames -= 1
                await self._handle_frame(item)
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

    def _send(self, message: dict[str, object]) -> None:
        try:
            self._outbox.put_nowait(json.dumps(message))
        except asyncio.QueueFull:
            # A client that does not read its signaling is gone; it must not hold the room.
            self._abort(WS_CLOSE_CODE["not-reading"], "client not reading")

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
            error = ProtocolError(
                f"{self.errors} errors on this connection", code="too-many-errors"
            )
            self._send(error.to_wire(ref))
            self._abort(WS_CLOSE_CODE[error.code], "too many errors")
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
        agent = self._bound(message)
        if isinstance(message, m.Offer):
            if not isinstance(agent, PublisherAgent):
                raise ProtocolError("viewers answer the server's offer", code="wrong-role")
            self._send(m.sdp_message("answer", await agent.publish(message.sdp)))
        elif isinstance(message, m.Answer):
            if not isinstance(agent, ViewerAgent):
                raise ProtocolError(
                    "the server answers a streamer; it never offers", code="wrong-role"
                )
            await agent.accept_answer(message.sdp)
        elif isinstance(message, m.Candidate):
            init = message.candidate
            if message.is_end_of_candidates or init is None:
                await agent.add_candidate(None, None, None)
            else:
                await agent.add_candidate(init.candidate, init.sdpMid, init.sdpMLineIndex)
        elif isinstance(message, m.Leave):
            await self._leave("streamer-left")

    def _bound(self, message: m.ClientMessage) -> Agent:
        agent = self.agent
        if agent is None or agent.room is None:
            raise ProtocolError(f"send join before {message.type}", code="not-joined")
        claimed = getattr(message, "roomId", None)
        if claimed is not None and claimed != agent.room.id:
            raise ProtocolError(
                f"this connection joined room {agent.room.id!r}, not {claimed!r}",
                code="wrong-room",
            )
        return agent

    async def _join(self, message: m.Join) -> None:
        if self.agent is not None:
            raise ProtocolError("already joined; send leave first", code="already-joined")
        ears = _Ears(self)
        agent: Agent
        if message.role == Role.STREAMER:
            agent = PublisherAgent(self._context, ears, via="ws")
        else:
            agent = ViewerAgent(self._context, ears, via="ws", server_offers=True)
        ears.agent = self.agent = agent
        try:
            await agent.join(message.roomId, token=message.token, resume_key=message.resumeKey)
        except BaseException:
            self.agent = None
            await agent.close("join refused")
            raise
        self.log = agent.log

    async def _leave(self, reason: str) -> None:
        """Leave the room (a `leave`, or the socket closing). Idempotent."""
        agent = self.agent
        if agent is not None:
            await agent.close(reason)  # its last words (stream-ended) still reach this socket
            self.agent = None
            self.log = self._own_log


class _Ears:
    """The session's AgentListener: what its agent says becomes messages on this socket.
    Events of an agent the session no longer has (it left, or joined again) are dropped."""

    def __init__(self, session: SignalingSession) -> None:
        self._session = session
        self.agent: Agent | None = None

    def _send(self, message: dict[str, object]) -> None:
        if self.agent is not None and self._session.agent is self.agent:
            self._session._send(message)

    def joined(self, room: Room, participant: Participant) -> None:
        self._send(
            m.joined(
                participant.client_id,
                room.id,
                participant.role,
                [server.to_wire() for server in self._session._context.config.ice_servers],
                room.live,
                len(room.viewers),
                participant.resume_key,
            )
        )

    def offer(self, sdp: str) -> None:
        self._send(m.sdp_message("offer", sdp))

    def stream_started(self) -> None:
        self._send(m.stream_started())

    def stream_ended(self, reason: str) -> None:
        self._send(m.stream_ended(reason))

    def viewers_changed(self, count: int) -> None:
        self._send(m.viewers(count))

    def peer_lost(self) -> None:
        pass  # the agent offers again by itself

    def failed(self, error: NetraError) -> None:
        self._send(error.to_wire())

    def replaced(self) -> None:
        session = self._session
        if self.agent is None or session.agent is not self.agent:
            return
        session.agent = None
        error = ProtocolError("this client joined again from another connection", code="replaced")
        session._send(error.to_wire())
        session._abort(WS_CLOSE_CODE[error.code], "replaced")
