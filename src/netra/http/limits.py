"""How much the HTTP doors take: a token bucket for requests, a cap on live sessions."""

from __future__ import annotations

from time import monotonic

from netra.errors import UserError


class RateLimit:
    """`rate` requests a second on average, bursts of up to `burst` (RFC 9725 §5: rate-limit
    POST, PATCH and DELETE). One bucket for the server: behind a reverse proxy every request
    comes from the same address, so the address cannot be trusted to tell clients apart."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = monotonic()

    def take(self) -> None:
        now = monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            raise UserError(
                "too many WHIP/WHEP requests to this server; slow down",
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
