"""Typed errors, by who is at fault, and their one mapping to wire errors.

Each error carries a stable `code` (docs/protocol.md and docs/whip-whep.md list them). The
WebSocket session sends any NetraError as an `error` message (`to_wire()`), closing the socket
for the few codes in WS_CLOSE_CODE; the WHIP/WHEP resources answer it with `http_status()` and a
problem+json body. Anything that is not a NetraError is our bug and becomes `internal-error`.
"""

from __future__ import annotations


class NetraError(Exception):
    code = "internal-error"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        # Seconds after which the same request may succeed (HTTP Retry-After).
        self.retry_after = retry_after

    def to_wire(self, ref: str | None = None) -> dict[str, object]:
        wire: dict[str, object] = {"type": "error", "code": self.code, "message": self.message}
        if ref is not None:
            wire["ref"] = ref
        return wire

    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class ProtocolError(NetraError):
    """The client broke the protocol: a bug in the client. Codes: bad-json, too-large,
    unknown-type, invalid-message, not-joined, already-joined, wrong-room, wrong-role,
    out-of-order, too-many-errors, replaced, invalid-sdp, unsupported-media-type,
    precondition-required, precondition-failed."""


class UserError(NetraError):
    """A well-formed request the server cannot satisfy: streamer-exists, negotiation-failed,
    unsupported-codec, not-live, over-capacity, rate-limited, ice-restart-unsupported,
    room-full, too-many-rooms, too-many-joins, too-many-connections, directory-unavailable
    (a cluster's Redis is away), origin-unreachable and origin-refused (a node's pull)."""


class NotAuthorised(NetraError):
    """No usable credentials (`unauthorized`), or credentials that do not allow this
    (`forbidden`)."""


class NotFound(NetraError):
    """No such session (`not-found`)."""

    code = "not-found"


class InternalError(NetraError):
    """Our bug. The wire message stays generic; the log gets the traceback."""

    code = "internal-error"


def unauthorized(message: str) -> NotAuthorised:
    return NotAuthorised(message, code="unauthorized")


def forbidden(message: str) -> NotAuthorised:
    return NotAuthorised(message, code="forbidden")


# The one mapping from error codes to HTTP statuses (WHIP, WHEP, the admin API). RFC 9725
# §4.2-4.5 names 415, 400, 422, 401/403, 404, 409 (WHEP: not live), 412/428, 429, 503.
HTTP_STATUS: dict[str, int] = {
    "bad-json": 400,
    "too-large": 413,
    "invalid-message": 400,
    "invalid-sdp": 400,
    "unsupported-media-type": 415,
    "negotiation-failed": 422,
    "unsupported-codec": 422,
    "ice-restart-unsupported": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not-found": 404,
    "streamer-exists": 409,
    "not-live": 409,
    "precondition-failed": 412,
    "precondition-required": 428,
    "rate-limited": 429,
    "too-many-joins": 429,
    "too-many-connections": 429,
    "over-capacity": 503,
    "room-full": 503,
    "too-many-rooms": 503,
    "directory-unavailable": 503,
    "internal-error": 500,
}

# Errors that end a WebSocket connection, and the close code they end it with.
REPLACED_CLOSE_CODE = 4001
WS_CLOSE_CODE: dict[str, int] = {
    "too-many-errors": 1008,
    "not-reading": 1008,
    "rate-limited": 1008,
    "too-many-connections": 1008,
    "replaced": REPLACED_CLOSE_CODE,
}
