"""Log lines that say who, and how the server's log is written.

Every line of a participant's carries its room id, client id and role: in the text format as
a `room=… client=… role=…` prefix, in the JSON format as fields of their own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WHO = ("room", "client", "role")


class ParticipantLog(logging.LoggerAdapter):
    """Prefixes each message with `room=… client=… role=…` and puts the three on the record
    as fields; they can be set after join."""

    def __init__(self, logger: logging.Logger, client_id: str) -> None:
        super().__init__(logger, {"room": "-", "client": client_id, "role": "-"})

    def bind(self, room: str, role: str) -> None:
        assert self.extra is not None
        self.extra = {**self.extra, "room": room, "role": role}

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**kwargs.get("extra", {}), **extra}
        return f"{_prefix(extra)}{msg}", kwargs


def _prefix(who: Any) -> str:
    return f"room={who['room']} client={who['client']} role={who['role']} "


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and room, client and role
    for a participant's line (its message then without the text prefix)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        who = {key: getattr(record, key) for key in WHO if hasattr(record, key)}
        if len(who) == len(WHO):
            line["message"] = message.removeprefix(_prefix(who))
            line.update(who)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The server's log on stderr, in `log_format` ("text" or "json"). A process whose root
    logger already has handlers (a test runner's) keeps them, as logging.basicConfig does."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
    # aioice logs every connectivity check at INFO: dozens of lines per peer connection.
    logging.getLogger("aioice").setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
