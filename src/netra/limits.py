"""How much the doors take: token buckets, caps on sessions, connections and joins.

Past a limit a typed error (netra.errors maps it to a status or a WebSocket error); never a
slowdown for anyone else.
"""

from __future__ import annotations

from collections import Counter, deque
from time import monotonic

from netra.errors import UserError

JOIN_WINDOW_SECONDS = 60.0


class RateLimit:
    """`rate` requests a second on average, bursts of up to `burst`: over HTTP one bucket for
    the server's WHIP/WHEP requests (RFC 9725 §5: rate-limit POST, PATCH and DELETE; behind a
    reverse proxy every request comes from the same address, so the address cannot be trusted
    to tell clients apart), over the WebSocket one per connection."""

    def __init__(self, rate: float, burst: int, what: str = "WHIP/WHEP requests to this server"):
        self.rate = rate
        self.burst = float(burst)
        self.what = what
        self._tokens = float(burst)
        self._at = monotonic()

    def take(self) -> None:
        now = monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            raise UserError(
                f"too many {self.what}; slow down",
                code="rate-limited",
                retry_after=(1 - self._tokens) / self.rate,
            )
        self._tokens -= 1


def check_capacity(open_sessions: int, max_sessions: int) -> None:
    if open_sessions >= max_sessions:
        raise UserError(
            f"this server is at its limit of {max_sessions} WHIP/WHEP sessions; try again later",
            code="over-capacity",
            retry_after=5,
        )


class AddressLimits:
    """Per client address: WebSocket connections open at once, and joins in the last minute.
    (Behind a reverse proxy all clients share its address: raise the limits there.)"""

    def __init__(self, *, max_connections: int, joins_per_minute: int) -> None:
        self._max_connections = max_connections
        self._joins_per_minute = joins_per_minute
        self._connections: Counter[str] = Counter()
        self._joins: dict[str, deque[float]] = {}

    def connect(self, address: str) -> None:
        if self._connections[address] >= self._max_connections:
            raise UserError(
                f"{self._connections[address]} connections from {address} already",
                code="too-many-connections",
                retry_after=5,
            )
        self._connections[address] += 1

    def disconnect(self, address: str) -> None:
        self._connections[address] -= 1
        if self._connections[address] <= 0:
            del self._connections[address]

    def join(self, address: str) -> None:
        now = monotonic()
        times = self._joins.setdefault(address, deque())
        while times and times[0] <= now - JOIN_WINDOW_SECONDS:
            times.popleft()
        if len(times) >= self._joins_per_minute:
            raise UserError(
                f"{len(times)} joins from {address} in the last minute; slow down",
                code="too-many-joins",
                retry_after=times[0] + JOIN_WINDOW_SECONDS - now,
            )
        times.append(now)
        if len(self._joins) > 10_000:  # forget quiet addresses, so this stays small
            for quiet in [a for a, t in self._joins.items() if t[-1] <= now - JOIN_WINDOW_SECONDS]:
                del self._joins[quiet]
