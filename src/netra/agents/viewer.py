"""ViewerAgent: a viewer's lifecycle, in either direction of offer.

Over the WebSocket the server offers (whoever sends media makes the offer): the agent offers
the room's stream whenever it starts, and again when the viewer's peer connection fails while
the stream is live. Over WHEP the player offers and the agent answers; a failed connection is
then the player's to redo (`peer_lost`).
"""

from __future__ import annotations

from netra.agents.agent import Agent, AgentContext, AgentListener
from netra.errors import ProtocolError, UserError
from netra.media.peer import Peer
from netra.rooms.participant import Role
from netra.rooms.room import Room

# Told to a WHEP player that asks for a room that is not live (WHEP: 409 + Retry-After).
NOT_LIVE_RETRY_SECONDS = 2


class ViewerAgent(Agent):
    role = Role.VIEWER

    def __init__(
        self, context: AgentContext, listener: AgentListener, *, via: str, server_offers: bool
    ) -> None:
        super().__init__(context, listener, via=via)
        self._server_offers = server_offers
        self._awaiting_answer = False
        self._peers_made = 0

    # --- the server offers (WebSocket) -------------------------------------------------------

    def _joined(self, room: Room) -> None:
        if self._server_offers and room.live:
            self._post(self._on_stream_started)
        if room.streamer is None and self.via != "relay" and self.context.relays is not None:
            self.context.relays.want()  # its origin may be another node

    async def _on_stream_started(self) -> None:
        room = self.room
        if room is None or not room.live:
            return
        self._listener.stream_started()
        if not self._server_offers:
            return
        await self._close_peer()
        peer = self._new_peer()
        offer = await peer.offer(room.publications)
        self._awaiting_answer = True
        self._listener.offer(offer)
        self.log.info("offered the stream")
        if room.stalled is not None:
            self._listener.stream_stalled(room.stalled)

    async def accept_answer(self, sdp: str) -> None:
        await self._call(lambda: self._accept_answer(sdp))

    async def _accept_answer(self, sdp: str) -> None:
        if self.participant is None:
            raise ProtocolError("send join before answer", code="not-joined")
        if self.peer is None or not self._awaiting_answer:
            if self._had_peer():
                return  # an answer to an offer whose stream has since ended
            raise ProtocolError("no offer is waiting for an answer", code="out-of-order")
        self._awaiting_answer = False
        try:
            await self.peer.accept_answer(sdp)
        except BaseException:
            await self._close_peer()
            raise

    # --- the player offers (WHEP) --------------------------------------------------------------

    async def answer(self, sdp: str) -> str:
        """Answer a player's offer with the room's stream."""
        return await self._call(lambda: self._answer(sdp))

    async def _answer(self, sdp: str) -> str:
        room = self.room
        if room is None:
            raise ProtocolError("join before offering", code="not-joined")
        if not room.live:
            raise UserError(
                f"room {room.id!r} is not live; try again when it is",
                code="not-live",
                retry_after=NOT_LIVE_RETRY_SECONDS,
            )
        if self.peer is not None:
            raise ProtocolError("this session already has a peer connection", code="out-of-order")
        peer = self._new_peer()
        try:
            answer = await peer.answer_subscriber(sdp, room.publications)
        except BaseException:
            await self._close_peer()
            raise
        self.log.info("answered the player's offer")
        return answer

    # --- both ------------------------------------------------------------------------------

    def _new_peer(self) -> Peer:
        self._peers_made += 1
        return super()._new_peer()

    def _had_peer(self) -> bool:
        return self._peers_made > 0

    async def _on_stream_ended(self, reason: str) -> None:
        await self._close_peer()
        self._listener.stream_ended(reason)

    async def _on_peer_state(self, peer: Peer, state: str) -> None:
        if state not in ("failed", "closed"):
            return
        await self._close_peer()
        if not self._server_offers:
            self._listener.peer_lost()
        elif self.room is not None and self.room.live:
            self._post(self._on_stream_started)  # offer again on a new peer connection

    async def _close_peer(self) -> None:
        self._awaiting_answer = False
        await super()._close_peer()
