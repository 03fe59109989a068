"""RoomRegistry: rooms by id, created on first join and dropped when the last one leaves."""

from __future__ import annotations

import logging

from netra.rooms.participant import Participant
from netra.rooms.room import Room

logger = logging.getLogger(__name__)


class RoomRegistry:
    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def join(self, room_id: str, participant: Participant) -> Room:
        room = self._rooms.get(room_id)
        created = room is None
        if room is None:
            room = Room(room_id)
        room.join(participant)  # may raise; a new room is then simply not kept
        if created:
            self._rooms[room_id] = room
            logger.info("room=%s client=%s role=%s room opened", room_id,
                        participant.client_id, participant.role)
        return room

    def leave(self, room: Room, participant: Participant) -> None:
        room.leave(participant)
        if room.is_empty and self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            logger.info("room=%s client=%s role=%s room closed", room.id,
                        participant.client_id, participant.role)

    def get(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def __len__(self) -> int:
        return len(self._rooms)

    def snapshot(self) -> list[dict[str, object]]:
        return [room.snapshot() for room in self._rooms.values()]
