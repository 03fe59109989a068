"""RoomRegistry: rooms by id, created on first join and dropped when the last one leaves."""

from __future__ import annotations

import logging

from netra.rooms.participant import Participant
from netra.rooms.room import Room

logger = logging.getLogger(__name__)


class RoomRegistry:
    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def join(self, room_id: str, participant: Participant, resume_key: str | None = None) -> Room:
        room = self._rooms.get(room_id)
        created = room is None
        if room is None:
            room = Room(room_id)
        elif resume_key:
            old = room.find(resume_key, participant.role)
            if old is not None:
                self._replace(room, old)
        room.join(participant)  # may raise; a new room is then simply not kept
        if created:
            self._rooms[room_id] = room
            logger.info(
                "room=%s client=%s role=%s room opened",
                room_id,
                participant.client_id,
                participant.role,
            )
        return room

    def _replace(self, room: Room, old: Participant) -> None:
        """Remove a participant whose client has come back on a new connection, at once:
        its old socket may take a heartbeat or two to be noticed dead."""
        logger.info(
            "room=%s client=%s role=%s replaced by a re-join", room.id, old.client_id, old.role
        )
        room.end_stream(old, "streamer-disconnected")
        room.leave(old)
        old.listener.replaced()

    def leave(self, room: Room, participant: Participant) -> None:
        room.leave(participant)
        if room.is_empty and self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            logger.info(
                "room=%s client=%s role=%s room closed",
                room.id,
                participant.client_id,
                participant.role,
            )

    def get(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def __len__(self) -> int:
        return len(self._rooms)

    def snapshot(self) -> list[dict[str, object]]:
        return [room.snapshot() for room in self._rooms.values()]
