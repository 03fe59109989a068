"""Agent: one participant's lifecycle, whichever way it came in (WebSocket, WHIP or WHEP).

An agent owns its Participant and its Peer and runs one serial loop: what its adapter asks
(`publish`, `accept_answer`, …), what its Room tells it and what its Peer reports are queued
and handled in order, so there is one negotiation at a time and no locks. It talks back to
its adapter through an AgentListener and raises NetraErrors, which the adapter maps to its
wire (netra.errors holds the one mapping). Adapters stay thin: the WebSocket session, the WHIP
resource and the WHEP resource.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiortc import RTCIceServer

from netra.auth import Authority, Claims, Grant
from netra.cluster.directory import Directory, LocalDirectory, Node
from netra.config import Config
from netra.errors import NetraError, ProtocolError, UserError
from netra.media.peer import Peer
from netra.observability.log import ParticipantLog
from netra.rooms.participant import Participant, Role
from netra.rooms.registry import RoomRegistry
from netra.rooms.room import Room

if TYPE_CHECKING:
    from netra.cluster.relays import Relays

logger = logging.getLogger("netra.agent")

T = TypeVar("T")


@dataclass
class AgentContext:
    """What every agent needs, whichever way it came in; built once by the app."""

    config: Config
    rooms: RoomRegistry
    ice_servers: list[RTCIceServer]
    authority: Authority
    # Things that happened, by name ("resumes", "stalls", "error:<code>", …): plain counts
    # that the metrics collector reads at scrape time.
    events: Counter[str] = field(default_factory=Counter)
    # Which node is each room's origin: this process alone, unless it is one of a cluster.
    directory: Directory = field(default_factory=lambda: LocalDirectory(Node("local", "")))
    # A cluster node's pulls of rooms whose origin is another node.
    relays: Relays | None = None

    @property
    def cluster_node(self) -> str | None:
        """This node's name when it is one of a cluster (session ids carry it); else None."""
        return self.directory.node.id if self.relays is not None else None


class AgentListener(Protocol):
    """What an agent tells its adapter. Calls must not block."""

    def joined(self, room: Room, participant: Participant) -> None:
        """Said before anything the room says to the newcomer."""

    def offer(self, sdp: str) -> None:
        """A viewer the server offers to (WebSocket): send this offer."""

    def stream_started(self) -> None: ...

    def stream_ended(self, reason: str) -> None: ...

    def viewers_changed(self, count: int) -> None: ...

    def stream_stalled(self, reason: str) -> None: ...

    def stream_resumed(self) -> None: ...

    def peer_lost(self) -> None:
        """The peer connection failed and the agent will not renegotiate it by itself."""

    def failed(self, error: NetraError) -> None:
        """Something the agent did on its own (not asked by the adapter) failed."""


class Agent:
    role: Role

    def __init__(self, context: AgentContext, listener: AgentListener, *, via: str) -> None:
        self.client_id = secrets.token_hex(6)
        self.via = via
        self.log = ParticipantLog(logger, self.client_id)
        self.context = context
        self._listener = listener
        self.room: Room | None = None
        self.participant: Participant | None = None
        self.peer: Peer | None = None
        self.closed = False
        self._inbox: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"agent-{self.client_id}")

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while (job := await self._inbox.get()) is not None:
            await job()

    async def _call(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action` in the agent's loop and return what it returns (or raise what it
        raises)."""
        if self.closed:
            raise UserError("this session has ended", code="not-found")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def job() -> None:
            try:
                result = await action()
            except BaseException as exc:  # handed to the caller, who maps it
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

        self._inbox.put_nowait(job)
        return await future

    def _post(self, action: Callable[[], Awaitable[None]]) -> None:
        """Queue an event; failures go to the listener (typed) or the log (our bug)."""
        if self.closed:
            return

        async def job() -> None:
            if self.closed:
                return  # an event for a participant this agent no longer is
            try:
                await action()
            except NetraError as exc:
                self.log.info("%s: %s", exc.code, exc.message)
                self._listener.failed(exc)
            except Exception:
                self.log.exception("internal error handling an event")

        self._inbox.put_nowait(job)

    # --- joining and leaving -----------------------------------------------------------------

    async def join(self, room_id: str, *, token: str | None = None) -> Room:
        return await self._call(lambda: self._join(room_id, token))

    def admit(self, room_id: str, token: str | None) -> Claims | None:
        """Publishing always needs a token with `publish` for the room; viewing needs one
        with `subscribe` only when the server is configured so, or one with `relay` (another
        node of the cluster)."""
        authority = self.context.authority
        if self.role is Role.STREAMER:
            return authority.authorize(token, room_id, Grant.PUBLISH)
        if token and (relay := authority.grants(token, room_id, Grant.RELAY)) is not None:
            return relay
        if self.context.config.viewers_need_token:
            return authority.authorize(token, room_id, Grant.SUBSCRIBE)
        return None

    async def _join(self, room_id: str, token: str | None) -> Room:
        if self.participant is not None:
            raise ProtocolError("already joined; send leave first", code="already-joined")
        claims = self.admit(room_id, token)
        if claims is not None and Grant.RELAY in claims.grants:
            self.via = "relay"
        participant = Participant(
            self.client_id,
            self.role,
            listener=self,
            identity=claims.identity if claims else None,
            via=self.via,
        )
        await self._claim(room_id)
        try:
            room = self.context.rooms.join(room_id, participant)
        except BaseException:
            await self._unclaim(room_id)
            raise
        self.room, self.participant = room, participant
        self.log.bind(room.id, participant.role)
        self.log.info("joined via %s (live=%s, viewers=%d)", self.via, room.live, room.audience)
        self._listener.joined(room, participant)
        self._joined(room)
        return room

    async def _claim(self, room_id: str) -> None:
        """What a role must hold in the cluster before it joins (a streamer: the room's origin)."""

    async def _unclaim(self, room_id: str) -> None:
        """The join failed after `_claim`."""

    def _joined(self, room: Room) -> None:
        """A role's first step in its room."""

    async def close(self, reason: str) -> None:
        """Leave the room and close the peer connection. Idempotent."""
        if self.closed:
            await asyncio.shield(self._task)
            return
        # Closed at once: nothing queued after this point runs (see _call and _post).
        self.closed = True
        self._inbox.put_nowait(lambda: self._leave(reason))
        self._inbox.put_nowait(None)
        await asyncio.shield(self._task)

    async def _leave(self, reason: str) -> None:
        room, participant = self.room, self.participant
        self.room = self.participant = None
        try:
            if room is not None and participant is not None:
                self._leaving(room, participant, reason)
                self.context.rooms.leave(room, participant)
                self.log.info("left (%s)", reason)
        finally:
            self.log.bind("-", "-")
            await self._close_peer()

    def _leaving(self, room: Room, participant: Participant, reason: str) -> None:
        """A role's last words in its room."""

    # --- the Peer ----------------------------------------------------------------------------

    def _new_peer(self) -> Peer:
        config = self.context.config
        self.peer = Peer(
            ice_servers=self.context.ice_servers,
            connect_timeout=config.connect_timeout,
            announced_ip=config.announced_ip,
            on_state=lambda peer, state: self._post(lambda: self._peer_state(peer, state)),
            copies=config.relay_copies if self.via == "relay" else 1,
        )
        if self.participant is not None:
            self.participant.peer = self.peer.state
        return self.peer

    async def _peer_state(self, peer: Peer, state: str) -> None:
        if peer is not self.peer:
            return  # a closed peer's late event
        self.log.info("peer connection %s", state)
        if self.participant is not None:
            self.participant.peer = state
        if self.room is not None and self.participant is not None:
            await self._on_peer_state(peer, state)

    async def _on_peer_state(self, peer: Peer, state: str) -> None:
        raise NotImplementedError

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled candidate of the client's (None: end-of-candidates)."""
        await self._call(lambda: self._add_candidate(candidate, sdp_mid, sdp_mline_index))

    async def _add_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        if self.peer is None:
            if self._had_peer():
                return  # trickle that raced the end of its peer connection
            raise ProtocolError("no peer connection yet: send offer first", code="out-of-order")
        await self.peer.add_candidate(candidate, sdp_mid, sdp_mline_index)

    def _had_peer(self) -> bool:
        """Whether this agent had a peer connection that has since closed: late trickle and
        answers for it are moot. A streamer's candidates always follow its offer."""
        return False

    async def _close_peer(self) -> None:
        peer, self.peer = self.peer, None
        if self.participant is not None:
            self.participant.peer = None
        if peer is not None:
            await peer.close()

    # --- what the Room tells its participant (rooms.ParticipantListener) ---------------------

    def stream_started(self, room: Room) -> None:
        self._post(self._on_stream_started)

    def stream_ended(self, reason: str) -> None:
        self._post(lambda: self._on_stream_ended(reason))

    def viewers_changed(self, count: int) -> None:
        async def tell() -> None:
            self._listener.viewers_changed(count)

        self._post(tell)

    def stream_stalled(self, reason: str) -> None:
        async def tell() -> None:
            self._listener.stream_stalled(reason)

        self._post(tell)

    def stream_resumed(self) -> None:
        async def tell() -> None:
            self._listener.stream_resumed()

        self._post(tell)

    async def _on_stream_started(self) -> None:
        pass

    async def _on_stream_ended(self, reason: str) -> None:
        self._listener.stream_ended(reason)
