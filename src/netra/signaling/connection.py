"""Connection: one WebSocket, feeding one client's SignalingSession.

Frames go into one inbox and are handled in order by `run()`; `join` makes or resumes the
client's session (netra.signaling.sessions), and later messages are routed to it. What goes
out passes through a bounded outbox; NetraErrors become `error` messages (netra.errors). When
the socket drops, the session is parked rather than closed, so that the client can resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from netra.errors import WS_CLOSE_CODE, InternalError, NetraError, ProtocolError
from netra.limits import AddressLimits, RateLimit
from netra.observability.log import ParticipantLog
from netra.signaling import messages as m
from netra.signaling.remote import RemoteSession
from netra.signaling.session import MAX_QUEUED, SignalingSession
from netra.signaling.sessions import Sessions

logger = logging.getLogger("netra.session")

MAX_ERRORS = 10
MAX_PENDING_FRAMES = 256
# Room for a resumed session's whole queue besides what the connection sends itself.
MAX_OUTBOX = MAX_QUEUED + 256
FLUSH_SECONDS = 1.0

Send = Callable[[str], Coroutine[Any, Any, None]]
Close = Callable[[int, str], Coroutine[Any, Any, None]]

_CLOSED = object()


class Connection:
    def __init__(
        self,
        *,
        sessions: Sessions,
        send: Send,
        close: Close,
        address: str,
        limits: AddressLimits,
        message_rate: float,
        forwarded: bool = False,
    ) -> None:
        self._own_log = ParticipantLog(logger, secrets.token_hex(6))
        self.log = self._own_log
        self._sessions = sessions
        self._send_text = send
        self._close_socket = close
        self._address = address
        self._limits = limits
        self._rate = RateLimit(message_rate, int(2 * message_rate) or 1, "messages on this socket")
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._pending_frames = 0
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=MAX_OUTBOX)
        self.errors = 0
        self.session: SignalingSession | None = None
        # The client's session is on another node: frames are piped there (forwarded: this
        # connection is such a pipe, and never pipes on).
        self._remote: RemoteSession | None = None
        self._forwarded = forwarded
        self._close_with: tuple[int, str] | None = None
        self._offender = False  # closed for misbehaving: its session is not kept

    # --- feeding the loop (called from the socket reader) ----------------------------------

    def receive(self, raw: str | bytes) -> None:
        self._pending_frames += 1
        if self._pending_frames > MAX_PENDING_FRAMES:
            self._abort(WS_CLOSE_CODE["not-reading"], "too many unprocessed messages")
            return
        self._inbox.put_nowait(raw)

    def socket_closed(self) -> None:
        """The socket is closed, however (only `leave` says the client is done): the session
        is parked for its grace period."""
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
                if self._remote is not None:
                    await self._remote.send(item)  # its node validates and answers it
                else:
                    await self._handle_frame(item)
        finally:
            if self._remote is not None:
                await self._remote.close()
            session, self.session = self.session, None
            if session is not None:
                if self._offender:
                    await self._sessions.leave(session, "streamer-disconnected")
                else:
                    self._sessions.park(session, self)
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

    # --- what a session needs of its connection (session.Link) -----------------------------

    def send_text(self, text: str) -> None:
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            # A client that does not read its signaling is gone; it must not hold the room.
            self._abort(WS_CLOSE_CODE["not-reading"], "client not reading")

    def unsent(self) -> list[str]:
        texts = []
        while not self._outbox.empty():
            text = self._outbox.get_nowait()
            if text is not None:
                texts.append(text)
        return texts

    def replaced(self) -> None:
        self.session = None
        error = ProtocolError("this client resumed on another connection", code="replaced")
        self._send(error.to_wire())
        self._abort(WS_CLOSE_CODE[error.code], "replaced")

    # --- frames --------------------------------------------------------------------------

    def _send(self, message: dict[str, object]) -> None:
        self.send_text(json.dumps(message))

    def _abort(self, code: int, reason: str, *, offender: bool = False) -> None:
        """Stop handling this socket now; the loop parks or ends the session and closes it."""
        if not self._close_with:
            self.log.warning("closing connection: %s", reason)
            self._close_with = (code, reason)
            self._offender = offender
            self._inbox.put_nowait(_CLOSED)

    async def _handle_frame(self, raw: str | bytes) -> None:
        try:
            self._rate.take()
            message = m.parse(raw)
        except NetraError as exc:
            self._refuse(exc, m.peek_type(raw))
            return
        try:
            await self._dispatch(message)
        except NetraError as exc:
            self._refuse(exc, message.type)
        except Exception:
            self.log.exception("internal error handling %s", message.type)
            self._count("internal-error")
            self._send(InternalError("internal server error").to_wire(message.type))

    def _refuse(self, exc: NetraError, ref: str | None) -> None:
        self.errors += 1
        self._count(exc.code)
        self.log.info("refused %s: %s %s", ref or "frame", exc.code, exc.message)
        if self.errors >= MAX_ERRORS:
            error = ProtocolError(
                f"{self.errors} errors on this connection", code="too-many-errors"
            )
            self._count(error.code)
            self._send(error.to_wire(ref))
            self._abort(WS_CLOSE_CODE[error.code], "too many errors", offender=True)
            return
        self._send(exc.to_wire(ref))

    def _count(self, code: str) -> None:
        self._sessions.events[f"error:{code}"] += 1

    # --- client messages -----------------------------------------------------------------

    async def _dispatch(self, message: m.ClientMessage) -> None:
        if isinstance(message, m.Ping):
            self._send(m.pong(message.id))
        elif isinstance(message, m.Join):
            await self._join(message)
        elif self.session is None:
            raise ProtocolError(f"send join before {message.type}", code="not-joined")
        elif isinstance(message, m.Leave):
            session, self.session = self.session, None
            self.log = self._own_log
            await self._sessions.leave(session, "streamer-left")
        else:
            await self.session.handle(message)

    async def _join(self, message: m.Join) -> None:
        if self.session is not None:
            raise ProtocolError("already joined; send leave first", code="already-joined")
        if not self._forwarded:
            self._remote = await self._sessions.remote(
                message, self._address, self.send_text, self._abort
            )
            if self._remote is not None:
                self.log.info("its session is on another node: piping there")
                return
        self.session = await self._sessions.join(
            self, message, admit=lambda: self._limits.join(self._address)
        )
        self.log = self.session.log
