"""PublisherAgent: a streamer's lifecycle. It accepts the streamer's offers, starts the stream
once a peer connection is up, and keeps the stream through the streamer's reconnects.

The stream outlives one peer connection: when it fails, or the streamer offers again, viewers
are told the stream is reconnecting and the next connection's tracks carry it on
(Room.start_stream). A watch on the stream's packet counts notices media that stops (stalled)
and a streamer that vanished (the stream ends), whichever connection the media came on.
"""

from __future__ import annotations

import asyncio
from time import monotonic

from netra.agents.agent import Agent, AgentContext, AgentListener
from netra.errors import ProtocolError, UserError
from netra.media.peer import Peer
from netra.rooms.participant import Participant, Role
from netra.rooms.room import Room

WATCH_SECONDS = 0.25
# No media for this long stalls the stream (viewers told within 2 s of the last packet).
STALL_SECONDS = 1.5
# Nothing at all (RTP or RTCP) for this long ends it (within 10 s of the last packet).
VANISH_SECONDS = 8.0


class PublisherAgent(Agent):
    role = Role.STREAMER

    def __init__(self, context: AgentContext, listener: AgentListener, *, via: str) -> None:
        super().__init__(context, listener, via=via)
        self._watch: asyncio.TimerHandle | None = None
        self._counts = (-1, -1)  # (RTP, RTP + RTCP) packets at the last look
        self._media_at = self._heard_at = 0.0
        self._origin_of: str | None = None  # the room whose origin claim this agent holds

    # --- the room's origin in the cluster ------------------------------------------------------

    async def _claim(self, room_id: str) -> None:
        local = self.context.rooms.get(room_id)
        if local is not None and local.streamer is not None and local.streamer.via != "relay":
            return  # the room refuses the join: it has a streamer here
        await self._take_origin(room_id)

    async def _take_origin(self, room_id: str) -> None:
        directory, relays = self.context.directory, self.context.relays
        origin = await directory.claim(room_id)
        here = origin.node.id == directory.node.id
        if not here and relays is not None and not await relays.answers(origin.node):
            # Its node may be gone (killed): its claim would hold the room until it expires,
            # and the streamer is here now. Taken only if that node has stopped ticking too.
            origin = await directory.claim(room_id, replacing=origin.node.id)
            if origin.node.id == directory.node.id:
                self.log.warning("took the origin claim of a node that stopped answering")
        if origin.node.id != directory.node.id:
            raise UserError(
                f"room {room_id!r} already has a streamer (on node {origin.node.id})",
                code="streamer-exists",
            )
        self._origin_of = room_id
        if relays is not None:
            await relays.stop(room_id)  # this node pulled it from a gone origin

    async def _unclaim(self, room_id: str) -> None:
        local = self.context.rooms.get(room_id)
        if self._origin_of == room_id and (local is None or local.streamer is None):
            await self.context.directory.release(room_id)
        self._origin_of = None

    async def _leave(self, reason: str) -> None:
        # The claim goes before anyone hears that the stream ended: a streamer who comes back
        # at once, on any node, must find the room free (edges hear it through their pulls).
        try:
            if self._origin_of is not None:
                room_id, self._origin_of = self._origin_of, None
                await self.context.directory.release(room_id)
        finally:
            await super()._leave(reason)

    async def publish(self, sdp: str) -> str:
        """Apply the streamer's offer; return the server's answer. An offer while publishing
        replaces the peer connection (the streamer reconnects); the stream carries on."""
        return await self._call(lambda: self._publish(sdp))

    async def _publish(self, sdp: str) -> str:
        room, participant = self.room, self.participant
        if room is None or participant is None:
            raise ProtocolError("send join before offer", code="not-joined")
        if not self.context.directory.holds(room.id):
            # Another node took the room's origin (this one did not answer it, or Redis lost
            # the claim) and ended the stream here: publishing again needs the claim back.
            await self._take_origin(room.id)
        previous = self.peer
        peer = self._new_peer()
        try:
            answer = await peer.accept_offer(sdp)
        except BaseException:
            self.peer = previous
            participant.peer = previous.state if previous else None
            await self._discard(peer)
            raise
        if previous is not None:
            self.log.info("publishing again on a new peer connection")
            await self._discard(previous)
            room.stall_stream(participant, "streamer-reconnecting")
        self.log.info(
            "answered the streamer's offer (%s)",
            ", ".join(p.codec.mimeType for p in peer.publications),
        )
        return answer

    async def _on_peer_state(self, peer: Peer, state: str) -> None:
        room, participant = self.room, self.participant
        assert room is not None and participant is not None
        if state == "connected":
            room.start_stream(participant, peer.publications)  # starts it, or carries it on
            self._start_watch()
        elif state in ("failed", "closed"):
            self.peer = None
            participant.peer = None
            await self._discard(peer)
            if room.live:
                room.stall_stream(participant, "streamer-reconnecting")
                self._listener.peer_lost()
            else:
                self._listener.stream_ended("streamer-failed")

    async def _discard(self, peer: Peer) -> None:
        """Close a peer connection, and its tracks unless the stream has them."""
        await peer.close()
        kept = self.room.publications if self.room is not None else ()
        for publication in peer.publications:
            if publication not in kept:
                publication.close()

    async def _close_peer(self) -> None:
        peer, self.peer = self.peer, None
        if self.participant is not None:
            self.participant.peer = None
        if peer is not None:
            await self._discard(peer)

    # --- the watch ---------------------------------------------------------------------------

    def _start_watch(self) -> None:
        if self._watch is None:
            self._media_at = self._heard_at = monotonic()
            self._schedule_watch()

    def _schedule_watch(self) -> None:
        loop = asyncio.get_running_loop()
        self._watch = loop.call_later(WATCH_SECONDS, self._post, self._look)

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def _look(self) -> None:
        self._watch = None
        room, participant = self.room, self.participant
        if room is None or participant is None or not room.live:
            return
        now = monotonic()
        media = sum(p.stats["packets"] for p in room.publications)
        heard = media + sum(p.stats["rtcp"] for p in room.publications)
        if media != self._counts[0]:
            self._media_at = now
        if heard != self._counts[1]:
            self._heard_at = now
        self._counts = (media, heard)
        connected = self.peer is not None and self.peer.state == "connected"
        negotiating = self.peer is not None and not connected
        if now - self._heard_at > VANISH_SECONDS and not negotiating:
            self.log.warning("nothing from the streamer for %.1f s", now - self._heard_at)
            room.end_stream(participant, "streamer-vanished")  # tells this agent too
            await self._close_peer()
            return
        if now - self._media_at > STALL_SECONDS:
            reason = "no-media" if connected else "streamer-reconnecting"
            if room.stalled != reason:
                self.context.events["stalls"] += 1
                room.stall_stream(participant, reason)
        elif connected and room.stalled is not None:
            room.resume_stream(participant)
        self._schedule_watch()

    def _leaving(self, room: Room, participant: Participant, reason: str) -> None:
        self._stop_watch()
        if room.live:
            room.end_stream(participant, reason)
            # Said now: the room's own notice is for a participant we no longer are.
            self._listener.stream_ended(reason)
