"""The wire messages (docs/protocol.md), parsed at the edge.

`parse()` turns one raw WebSocket frame into exactly one typed client message or raises a
ProtocolError with a stable code; it never raises anything else. Server messages are built
by the small functions at the bottom so that their shape lives in one file.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netra.errors import ProtocolError
from netra.rooms.room import ROOM_ID_PATTERN

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_CHARS = 60_000

RoomId = Annotated[str, Field(pattern=ROOM_ID_PATTERN)]
Role = Literal["streamer", "viewer"]


class _Message(BaseModel):
    # strict: "5" is not an int; extra fields are ignored so clients can grow.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _RoomScoped(_Message):
    # May repeat the joined room; the session refuses any other.
    roomId: RoomId | None = None


class Join(_Message):
    type: Literal["join"]
    roomId: RoomId
    role: Role
    token: Annotated[str, Field(max_length=8192)] | None = None
    # From this client's last `joined`: resume that session (docs/protocol.md, Reconnecting).
    resumeKey: Annotated[str, Field(max_length=128)] | None = None


class Offer(_RoomScoped):
    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class Answer(_RoomScoped):
    type: Literal["answer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class IceCandidateInit(_Message):
    candidate: Annotated[str, Field(max_length=4096)]
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=255)] | None = None
    usernameFragment: Annotated[str, Field(max_length=256)] | None = None


class Candidate(_RoomScoped):
    type: Literal["candidate"]
    # None (or an empty candidate string) is end-of-candidates.
    candidate: IceCandidateInit | None

    @property
    def is_end_of_candidates(self) -> bool:
        return self.candidate is None or self.candidate.candidate == ""


class Leave(_RoomScoped):
    type: Literal["leave"]


class Ping(_Message):
    type: Literal["ping"]
    id: Annotated[str, Field(max_length=256)] | int | None = None


ClientMessage = Join | Offer | Answer | Candidate | Leave | Ping

_BY_TYPE: dict[str, type[ClientMessage]] = {
    "join": Join,
    "offer": Offer,
    "answer": Answer,
    "candidate": Candidate,
    "leave": Leave,
    "ping": Ping,
}


def parse(raw: str | bytes) -> ClientMessage:
    """One raw frame → one typed message, or ProtocolError. Never anything else."""
    if isinstance(raw, bytes):
        raise ProtocolError("binary frames are not part of the protocol", code="bad-json")
    if len(raw) > MAX_MESSAGE_BYTES or len(raw.encode("utf-8", "surrogatepass")) > (
        MAX_MESSAGE_BYTES
    ):
        raise ProtocolError(f"message over {MAX_MESSAGE_BYTES} bytes", code="too-large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {exc}", code="bad-json") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message is a JSON object", code="bad-json")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("a message needs a string 'type'", code="bad-json")
    model = _BY_TYPE.get(kind)
    if model is None:
        raise ProtocolError(f"unknown message type {kind[:64]!r}", code="unknown-type")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc), code="invalid-message") from None
    except RecursionError:
        raise ProtocolError("message nested too deeply", code="invalid-message") from None


def peek_type(raw: str | bytes) -> str | None:
    """The `type` of a frame that failed to parse, for the error's `ref`, if it has one."""
    if isinstance(raw, bytes) or len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind[:64] if isinstance(kind, str) else None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# Server → client. Plain dicts: the session serializes them with json.dumps.


def joined(
    client_id: str,
    room_id: str,
    role: str,
    ice_servers: list[dict[str, object]],
    live: bool,
    viewers: int,
    resume_key: str,
    node: str,
    *,
    resumed: bool = False,
    resume_error: str | None = None,
) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "joined",
        "clientId": client_id,
        "roomId": room_id,
        "role": role,
        "iceServers": ice_servers,
        "live": live,
        "viewers": viewers,
        "resumeKey": resume_key,
        "resumed": resumed,
        "node": node,
    }
    if resume_error is not None:
        message["resumeError"] = resume_error
    return message


def sdp_message(kind: Literal["offer", "answer"], sdp: str) -> dict[str, object]:
    return {"type": kind, "sdp": sdp}


def stream_started() -> dict[str, object]:
    return {"type": "stream-started"}


def stream_ended(reason: str) -> dict[str, object]:
    return {"type": "stream-ended", "reason": reason}


def stream_stalled(reason: str) -> dict[str, object]:
    return {"type": "stream-stalled", "reason": reason}


def stream_resumed() -> dict[str, object]:
    return {"type": "stream-resumed"}


def server_shutdown(retry_after: float) -> dict[str, object]:
    return {"type": "server-shutdown", "retryAfter": retry_after}


def viewers(count: int) -> dict[str, object]:
    return {"type": "viewers", "count": count}


def pong(ping_id: str | int | None) -> dict[str, object]:
    return {"type": "pong", "id": ping_id}
