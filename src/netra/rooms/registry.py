"""RoomRegistry: rooms by id, created on first join and dropped when the last one leaves."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from netra.errors import UserError
from netra.rooms.participant import Participant
from netra.rooms.room import Room

logger = logging.getLogger(__name__)


class RoomRegistry:
    def __init__(
        self,
        *,
        max_rooms: int = 1000,
        max_viewers_per_room: int = 1000,
        viewers_interval: float = 0.0,
    ) -> None:
        self._rooms: dict[str, Room] = {}
        self._max_rooms = max_rooms
        self._max_viewers = max_viewers_per_room
        self._viewers_interval = viewers_interval

    def join(self, room_id: str, participant: Participant) -> Room:
        room = self._rooms.get(room_id)
        created = room is None
        if room is None:
            if len(self._rooms) >= self._max_rooms:
                raise UserError(
                    f"the server has {len(self._rooms)} rooms open, its limit",
                    code="too-many-rooms",
                    retry_after=10,
                )
            room = Room(
                room_id, max_viewers=self._max_viewers, viewers_interval=self._viewers_interval
            )
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

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

    def snapshot(self) -> list[dict[str, object]]:
        return [room.snapshot() for room in self._rooms.values()]
