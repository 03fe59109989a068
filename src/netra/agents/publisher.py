"""PublisherAgent: a streamer's lifecycle. It accepts the streamer's offer, starts the stream
once the peer connection is up, and ends it when the connection fails or the streamer leaves."""

from __future__ import annotations

from netra.agents.agent import Agent
from netra.errors import ProtocolError
from netra.media.peer import Peer
from netra.rooms.participant import Participant, Role
from netra.rooms.room import Room


class PublisherAgent(Agent):
    role = Role.STREAMER

    async def publish(self, sdp: str) -> str:
        """Apply the streamer's offer; return the server's answer."""
        return await self._call(lambda: self._publish(sdp))

    async def _publish(self, sdp: str) -> str:
        if self.participant is None:
            raise ProtocolError("send join before offer", code="not-joined")
        if self.peer is not None:
            raise ProtocolError("already publishing; send leave first", code="out-of-order")
        peer = self._new_peer()
        try:
            answer = await peer.accept_offer(sdp)
        except BaseException:
            await self._close_peer()
            raise
        self.log.info(
            "answered the streamer's offer (%s)",
            ", ".join(p.codec.mimeType for p in peer.publications),
        )
        return answer

    async def _on_peer_state(self, peer: Peer, state: str) -> None:
        room, participant = self.room, self.participant
        assert room is not None and participant is not None
        if state == "connected":
            room.start_stream(participant, peer.publications)
        elif state in ("failed", "closed"):
            if room.live:
                room.end_stream(participant, "streamer-failed")  # tells this agent too
            else:
                self._listener.stream_ended("streamer-failed")
            await self._close_peer()

    def _leaving(self, room: Room, participant: Participant, reason: str) -> None:
        if room.live:
            room.end_stream(participant, reason)
            # Said now: the room's own notice is for a participant we no longer are.
            self._listener.stream_ended(reason)
