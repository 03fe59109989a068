"""Room: one streamer at most, any number of viewers, and the stream they share.

The room holds who is here and what is live; it never touches a socket or a peer connection.
It tells participants what changed through their listener.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from netra.errors import UserError
from netra.media.publication import Publication
from netra.rooms.participant import Participant, Role

logger = logging.getLogger(__name__)

ROOM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Room:
    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.streamer: Participant | None = None
        self.viewers: dict[str, Participant] = {}
        self.publications: tuple[Publication, ...] = ()

    @property
    def live(self) -> bool:
        return bool(self.publications)

    @property
    def is_empty(self) -> bool:
        return self.streamer is None and not self.viewers

    def join(self, participant: Participant) -> None:
        if participant.role is Role.STREAMER:
            if self.streamer is not None:
                raise UserError(f"room {self.id!r} already has a streamer", code="streamer-exists")
            self.streamer = participant
            # The count did not change; only the newcomer needs to hear it.
            participant.listener.viewers_changed(len(self.viewers))
        else:
            self.viewers[participant.client_id] = participant
            self._announce_viewers()

    def find(self, resume_key: str, role: Role) -> Participant | None:
        candidates = [self.streamer] if role is Role.STREAMER else list(self.viewers.values())
        return next((p for p in candidates if p is not None and p.resume_key == resume_key), None)

    def leave(self, participant: Participant) -> None:
        if participant is self.streamer:
            self.streamer = None
        elif self.viewers.pop(participant.client_id, None) is not None:
            self._announce_viewers()

    def start_stream(self, streamer: Participant, publications: Sequence[Publication]) -> None:
        if streamer is not self.streamer or self.live:
            return
        self.publications = tuple(publications)
        logger.info(
            "room=%s client=%s role=streamer stream started (%s)",
            self.id,
            streamer.client_id,
            ", ".join(f"{p.kind} {p.codec.mimeType}" for p in self.publications),
        )
        for viewer in list(self.viewers.values()):
            viewer.listener.stream_started(self)

    def end_stream(self, streamer: Participant, reason: str) -> None:
        if streamer is not self.streamer or not self.live:
            return
        self.publications = ()
        logger.info(
            "room=%s client=%s role=streamer stream ended: %s", self.id, streamer.client_id, reason
        )
        for participant in [streamer, *self.viewers.values()]:
            participant.listener.stream_ended(reason)

    def _announce_viewers(self) -> None:
        count = len(self.viewers)
        everyone = ([self.streamer] if self.streamer else []) + list(self.viewers.values())
        for participant in everyone:
            participant.listener.viewers_changed(count)

    def snapshot(self) -> dict[str, object]:
        return {
            "id": self.id,
            "live": self.live,
            "streamer": self.streamer.client_id if self.streamer else None,
            "viewers": len(self.viewers),
            "participants": [p.snapshot() for p in [self.streamer, *self.viewers.values()] if p],
            "publications": [p.snapshot() for p in self.publications],
        }
