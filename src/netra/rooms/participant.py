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

    def stream_stalled(self, reason: str) -> None:
        """Live, but no media flows: `no-media` or `streamer-reconnecting`."""

    def stream_resumed(self) -> None: ...

    def viewers_changed(self, count: int) -> None: ...


@dataclass(eq=False)
class Participant:
    client_id: str
    role: Role
    listener: ParticipantListener
    # The token's `sub`, when the client came with a token that has one.
    identity: str | None = None
    # The way in: "ws", "whip" or "whep".
    via: str = "ws"
    # Its peer connection's state ("connecting", "connected", …), None without one.
    peer: str | None = None
    # Whether its client is connected to its session now (a WebSocket client may be away,
    # within its grace period, while its media flows on).
    attached: bool = True

    def snapshot(self) -> dict[str, object]:
        return {"id": self.client_id, "role": str(self.role), "via": self.via,
                "identity": self.identity, "peer": self.peer,
                "attached": self.attached}  # fmt: skip
