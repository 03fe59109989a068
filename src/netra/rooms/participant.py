"""Participant: one client in one room, with a role."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from netra.rooms.room import Room


class Role(StrEnum):
    STREAMER = "streamer"
    VIEWER = "viewer"


class ParticipantListener(Protocol):
    """What a Room tells a participant's session. Calls must not block: the session queues
    them into its own loop."""

    def stream_started(self, room: Room) -> None: ...

    def stream_ended(self, reason: str) -> None: ...

    def viewers_changed(self, count: int) -> None: ...

    def replaced(self) -> None:
        """The same client joined again from a new connection (its resume key matched)."""


@dataclass(eq=False)
class Participant:
    client_id: str
    role: Role
    listener: ParticipantListener
    # Given only to the client itself; proves a re-join comes from the same client.
    resume_key: str = ""
    # The token's `sub`, when the client came with a token that has one.
    identity: str | None = None
    # The way in: "ws", "whip" or "whep".
    via: str = "ws"

    def snapshot(self) -> dict[str, object]:
        return {"id": self.client_id, "role": str(self.role), "via": self.via,
                "identity": self.identity}  # fmt: skip
