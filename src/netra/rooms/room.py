"""Room: one streamer at most, any number of viewers, and the stream they share.

The room holds who is here and what is live; it never touches a socket or a peer connection.
In a cluster, another node pulling the stream joins as a viewer `via` "relay": it gets the
stream like any viewer but is not counted in the audience (netra.cluster).
It tells participants what changed through their listener. A stream outlives its streamer's
peer connection: a streamer that reconnects with the same codecs carries the stream on
(`start_stream` adopts the new connection's tracks), and a stalled stream stays live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from time import monotonic

from netra.errors import UserError
from netra.media.publication import Publication
from netra.rooms.participant import Participant, Role

logger = logging.getLogger(__name__)

ROOM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Room:
    def __init__(
        self, room_id: str, *, max_viewers: int = 1000, viewers_interval: float = 0.0
    ) -> None:
        self.id = room_id
        self.streamer: Participant | None = None
        self.viewers: dict[str, Participant] = {}
        self.publications: tuple[Publication, ...] = ()
        # Why a live stream carries no media now (`no-media`, `streamer-reconnecting`).
        self.stalled: str | None = None
        # The room's viewers on the cluster's other nodes, as the directory last said.
        self.remote_audience = 0
        self._max_viewers = max_viewers
        # The count is told at most once per this many seconds: with N viewers each change
        # is N messages, so a join burst would cost N² without it.
        self._viewers_interval = viewers_interval
        self._told_at = float("-inf")
        self._telling: asyncio.TimerHandle | None = None

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
            participant.listener.viewers_changed(self.viewer_count)
        else:
            if self.audience >= self._max_viewers and participant.via != "relay":
                raise UserError(
                    f"room {self.id!r} has {self.audience} viewers, its limit",
                    code="room-full",
                    retry_after=10,
                )
            self.viewers[participant.client_id] = participant
            self._announce_viewers()

    @property
    def audience(self) -> int:
        """The viewers here, not counting other nodes' relays."""
        return sum(1 for viewer in self.viewers.values() if viewer.via != "relay")

    @property
    def viewer_count(self) -> int:
        """What participants are told: this node's audience and the other nodes'."""
        return self.audience + self.remote_audience

    def set_remote_audience(self, count: int) -> None:
        if count != self.remote_audience:
            self.remote_audience = count
            self._announce_viewers()

    def leave(self, participant: Participant) -> None:
        if participant is self.streamer:
            self.streamer = None
        elif self.viewers.pop(participant.client_id, None) is not None:
            self._announce_viewers()

    def start_stream(self, streamer: Participant, publications: Sequence[Publication]) -> None:
        """The streamer's media connected. A live stream (its streamer reconnected) adopts
        the new tracks when they carry the same codecs; otherwise viewers are offered anew."""
        if streamer is not self.streamer:
            return
        described = ", ".join(f"{p.kind} {p.codec.mimeType}" for p in publications)
        pairs = _carried_on(self.publications, publications) if self.live else None
        if pairs is not None:
            for old, new in pairs:
                old.adopt(new)
            logger.info(
                "room=%s client=%s role=streamer stream carries on from a new connection (%s)",
                self.id, streamer.client_id, described,
            )  # fmt: skip
            return
        for publication in self.publications:
            publication.close()
        self.publications = tuple(publications)
        self.stalled = None
        logger.info(
            "room=%s client=%s role=streamer stream started (%s)",
            self.id, streamer.client_id, described,
        )  # fmt: skip
        for viewer in list(self.viewers.values()):
            viewer.listener.stream_started(self)

    def stall_stream(self, streamer: Participant, reason: str) -> None:
        if streamer is not self.streamer or not self.live or self.stalled == reason:
            return
        self.stalled = reason
        logger.info(
            "room=%s client=%s role=streamer stream stalled: %s",
            self.id, streamer.client_id, reason,
        )  # fmt: skip
        for viewer in list(self.viewers.values()):
            viewer.listener.stream_stalled(reason)

    def resume_stream(self, streamer: Participant) -> None:
        if streamer is not self.streamer or not self.live or self.stalled is None:
            return
        self.stalled = None
        logger.info("room=%s client=%s role=streamer stream resumed", self.id, streamer.client_id)
        for viewer in list(self.viewers.values()):
            viewer.listener.stream_resumed()

    def end_stream(self, streamer: Participant, reason: str) -> None:
        if streamer is not self.streamer or not self.live:
            return
        publications, self.publications = self.publications, ()
        self.stalled = None
        for publication in publications:
            publication.close()
        logger.info(
            "room=%s client=%s role=streamer stream ended: %s", self.id, streamer.client_id, reason
        )
        for participant in [streamer, *self.viewers.values()]:
            participant.listener.stream_ended(reason)

    def _announce_viewers(self) -> None:
        """Tell everyone the count now, or when the interval since the last telling ends
        (then the count as it is by then: the newest count always arrives)."""
        if self._telling is not None:
            return
        wait = self._told_at + self._viewers_interval - monotonic()
        if wait > 0:
            self._telling = asyncio.get_running_loop().call_later(wait, self._tell_viewers)
        else:
            self._tell_viewers()

    def _tell_viewers(self) -> None:
        self._telling = None
        self._told_at = monotonic()
        count = self.viewer_count
        everyone = ([self.streamer] if self.streamer else []) + list(self.viewers.values())
        for participant in everyone:
            participant.listener.viewers_changed(count)

    def snapshot(self) -> dict[str, object]:
        return {
            "id": self.id,
            "live": self.live,
            "stalled": self.stalled,
            "streamer": self.streamer.client_id if self.streamer else None,
            "viewers": self.audience,
            "remote_viewers": self.remote_audience,
            "participants": [p.snapshot() for p in [self.streamer, *self.viewers.values()] if p],
            "publications": [p.snapshot() for p in self.publications],
        }


def _carried_on(
    old: Sequence[Publication], new: Sequence[Publication]
) -> list[tuple[Publication, Publication]] | None:
    """Each live track with the new connection's track that can carry it on: the same kinds,
    each in the same codec (what viewers' peer connections negotiated); else None."""
    by_kind = {p.kind: p for p in new}
    if len(by_kind) != len(new) or sorted(by_kind) != sorted(p.kind for p in old):
        return None
    pairs = [(a, by_kind[a.kind]) for a in old]
    if all(_same_codec(a, b) for a, b in pairs):
        return pairs
    return None


def _same_codec(a: Publication, b: Publication) -> bool:
    return (
        a.codec.mimeType.lower() == b.codec.mimeType.lower()
        and a.codec.clockRate == b.codec.clockRate
        and a.codec.parameters.get("profile-level-id") == b.codec.parameters.get("profile-level-id")
    )
