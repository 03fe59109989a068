"""SignalingSession: one client's session over the WebSocket, which outlives any one socket.

A session is made by a `join` and holds the client's agent (netra.agents), which owns the
participant lifecycle; the session routes the client's later messages to it and turns what it
says into messages. It is attached to one Connection (one WebSocket) at a time. When that
drops, the session is parked for the grace period: the agent, its peer connection and its
media go on, and what the agent says meanwhile is queued, bounded, and delivered in order
when the client resumes on a new connection with its resume key (docs/protocol.md,
"Reconnecting"). After `join`, room and role come from the session, never from a message.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import TYPE_CHECKING, Protocol

from netra.agents.agent import Agent, AgentContext
from netra.agents.publisher import PublisherAgent
from netra.agents.viewer import ViewerAgent
from netra.errors import NetraError, ProtocolError
from netra.rooms.participant import Participant, Role
from netra.rooms.room import Room
from netra.signaling import messages as m

if TYPE_CHECKING:
    from netra.signaling.sessions import Sessions

# Messages kept for a parked client; one more ends its session (`queue-overflow`).
MAX_QUEUED = 256
# What only its latest copy matters of: an older one is dropped from the queue when a newer
# one is queued (a second offer supersedes the first: answering both would fail).
_LATEST_ONLY = frozenset({"offer", "viewers"})


class Link(Protocol):
    """What a session needs of the connection it is attached to."""

    def send_text(self, text: str) -> None: ...

    def replaced(self) -> None:
        """The client resumed this session on another connection."""

    def unsent(self) -> list[str]:
        """Messages queued on this connection but not yet written, taken off it."""


class SignalingSession:
    def __init__(self, sessions: Sessions, context: AgentContext, role: str) -> None:
        self._sessions = sessions
        self._context = context
        self.agent: Agent = (
            PublisherAgent(context, self, via="ws")
            if role == Role.STREAMER
            else ViewerAgent(context, self, via="ws", server_offers=True)
        )
        self.log = self.agent.log
        self.key = sessions.new_key()
        self.link: Link | None = None
        self._queue: deque[tuple[str, str]] = deque()  # (type, text) while parked
        self._grace: asyncio.TimerHandle | None = None
        self._resume_error: str | None = None
        self.ended = False

    @property
    def room_id(self) -> str | None:
        return self.agent.room.id if self.agent.room is not None else None

    # --- attaching and parking -------------------------------------------------------------

    async def join(self, link: Link, message: m.Join, resume_error: str | None) -> None:
        """A first join: the agent's `joined` goes out on `link`."""
        self.link = link
        self._resume_error = resume_error
        await self.agent.join(message.roomId, token=message.token)

    def resume(self, link: Link) -> None:
        """The client is back on `link`: `joined` (same client id, a fresh key), then what
        its old connection had not written, then what was queued, in order, then the count."""
        old, self.link = self.link, link
        backlog = [text for _, text in self._queue]
        self._queue.clear()
        if old is not None:
            backlog = old.unsent() + backlog
            old.replaced()
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        room, participant = self.agent.room, self.agent.participant
        assert room is not None and participant is not None
        participant.attached = True
        self.key = self._sessions.new_key()
        self._context.events["resumes"] += 1
        self.log.info("resumed on a new connection (%d messages queued)", len(backlog))
        self._send(self._joined(room, participant, resumed=True))
        for text in backlog:
            link.send_text(text)
        self._send(m.viewers(room.viewer_count))

    def park(self, link: Link, grace: float) -> None:
        """`link` dropped: keep the session `grace` seconds for the client to resume."""
        if self.link is not link or self.ended:
            return
        self.link = None
        self._queue.extend((_type_of(text), text) for text in link.unsent())
        if self.agent.participant is not None:
            self.agent.participant.attached = False
        self.log.info("connection lost; kept for %.0f s", grace)
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(grace, self._sessions.end, self, "expired")

    # --- the client's messages -------------------------------------------------------------

    async def handle(self, message: m.ClientMessage) -> None:
        agent = self.agent
        if agent.room is None:
            raise ProtocolError(f"send join before {message.type}", code="not-joined")
        claimed = getattr(message, "roomId", None)
        if claimed is not None and claimed != agent.room.id:
            raise ProtocolError(
                f"this connection joined room {agent.room.id!r}, not {claimed!r}",
                code="wrong-room",
            )
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

    async def close(self, reason: str) -> None:
        """Leave the room and close everything of this client. Idempotent."""
        self.ended = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._queue.clear()
        await self.agent.close(reason)  # its last words (stream-ended) still reach the link

    # --- sending ---------------------------------------------------------------------------

    def _send(self, message: dict[str, object]) -> None:
        if self.ended and self.link is None:
            return
        text = json.dumps(message)
        if self.link is not None:
            self.link.send_text(text)
            return
        kind = str(message["type"])
        if kind in _LATEST_ONLY:
            self._queue = deque(item for item in self._queue if item[0] != kind)
        if len(self._queue) >= MAX_QUEUED:
            self._sessions.end(self, "queue-overflow")
            return
        self._queue.append((kind, text))

    def _joined(self, room: Room, participant: Participant, *, resumed: bool) -> dict[str, object]:
        return m.joined(
            participant.client_id,
            room.id,
            participant.role,
            [server.to_wire() for server in self._context.config.ice_servers],
            room.live,
            room.viewer_count,
            self.key,
            self._context.directory.node.id,
            resumed=resumed,
            resume_error=self._resume_error,
        )

    # --- what the agent says (AgentListener) -----------------------------------------------

    def joined(self, room: Room, participant: Participant) -> None:
        self._send(self._joined(room, participant, resumed=False))

    def offer(self, sdp: str) -> None:
        self._send(m.sdp_message("offer", sdp))

    def stream_started(self) -> None:
        self._send(m.stream_started())

    def stream_ended(self, reason: str) -> None:
        self._send(m.stream_ended(reason))

    def stream_stalled(self, reason: str) -> None:
        self._send(m.stream_stalled(reason))

    def stream_resumed(self) -> None:
        self._send(m.stream_resumed())

    def viewers_changed(self, count: int) -> None:
        self._send(m.viewers(count))

    def peer_lost(self) -> None:
        pass  # a viewer is offered again by its agent; a streamer's page offers again

    def failed(self, error: NetraError) -> None:
        self._send(error.to_wire())


def _type_of(text: str) -> str:
    try:
        return str(json.loads(text).get("type", ""))
    except (ValueError, AttributeError):
        return ""
