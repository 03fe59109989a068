"""Trickle ICE fragments (RFC 8840, `application/trickle-ice-sdpfrag`), parsed without I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from netra.errors import ProtocolError

MAX_FRAGMENT_CHARS = 16_000


@dataclass
class Fragment:
    ufrag: str | None = None
    pwd: str | None = None
    # (mid or None, candidate line without "a=")
    candidates: list[tuple[str | None, str]] = field(default_factory=list)
    end_of_candidates: bool = False


def parse_fragment(text: str) -> Fragment:
    if len(text) > MAX_FRAGMENT_CHARS:
        raise ProtocolError(f"fragment over {MAX_FRAGMENT_CHARS} characters", code="too-large")
    fragment = Fragment()
    mid: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise ProtocolError(f"not an SDP line: {line[:60]!r}", code="invalid-sdp")
        if line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=ice-ufrag:"):
            fragment.ufrag = line[12:]
        elif line.startswith("a=ice-pwd:"):
            fragment.pwd = line[10:]
        elif line.startswith("a=candidate:"):
            fragment.candidates.append((mid, line[2:]))
        elif line == "a=end-of-candidates":
            fragment.end_of_candidates = True
    return fragment


def session_ufrag(sdp: str) -> str | None:
    """The first ICE username fragment of a description (with bundle there is one)."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[12:].strip()
    return None


def transport_mids(sdp: str) -> dict[str, str]:
    """For each media section's mid, the mid of the section whose transport carries it: the
    first of its BUNDLE group (RFC 9143 §7.2.1), or its own when it is not bundled."""
    mids = [line[6:].strip() for line in sdp.splitlines() if line.startswith("a=mid:")]
    owner = {mid: mid for mid in mids}
    for line in sdp.splitlines():
        if line.startswith("a=group:BUNDLE "):
            group = [mid for mid in line[15:].split() if mid in owner]
            for mid in group:
                owner[mid] = group[0]
    return owner
