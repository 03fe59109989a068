"""Log lines that say who: every line carries the room id, client id and role."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class ParticipantLog(logging.LoggerAdapter):
    """Prefixes each message with `room=… client=… role=…`; fields can be set after join."""

    def __init__(self, logger: logging.Logger, client_id: str) -> None:
        super().__init__(logger, {"room": "-", "client": client_id, "role": "-"})

    def bind(self, room: str, role: str) -> None:
        assert self.extra is not None
        self.extra = {**self.extra, "room": room, "role": role}

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"room={extra['room']} client={extra['client']} role={extra['role']} {msg}", kwargs
