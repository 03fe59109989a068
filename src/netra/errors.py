"""Typed errors, by who is at fault, and their one mapping to wire errors.

(Authorisation errors arrive with authentication.)

Each error carries a stable `code` (docs/protocol.md lists them all). The signaling session
turns any NetraError into an `error` message with `to_wire()`; anything else is our bug and
becomes `internal-error`.
"""

from __future__ import annotations


class NetraError(Exception):
    code = "internal-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def to_wire(self, ref: str | None = None) -> dict[str, object]:
        wire: dict[str, object] = {"type": "error", "code": self.code, "message": self.message}
        if ref is not None:
            wire["ref"] = ref
        return wire


class ProtocolError(NetraError):
    """The client broke the protocol: a bug in the client. Codes: bad-json, too-large,
    unknown-type, invalid-message, not-joined, already-joined, wrong-room, wrong-role,
    out-of-order."""


class UserError(NetraError):
    """A well-formed request the server cannot satisfy: streamer-exists, negotiation-failed."""


class InternalError(NetraError):
    """Our bug. The wire message stays generic; the log gets the traceback."""

    code = "internal-error"
