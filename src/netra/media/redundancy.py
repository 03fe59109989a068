"""Redundancy: how many datagrams of each packet a pull gets, from the loss its NACKs report.

A pull crosses the link between two nodes. Where that link loses packets, each loss costs a
NACK round trip (a frame, when the packet lost was a frame's last), and at 1 % loss those
repairs are the hop's p99. Two copies of a packet are lost together p² of the time. So a pull
gets one copy while its NACKs say the link is clean, and two while they say it is not, as
Chromium's FEC follows the loss its receivers report.

Under two copies the link's loss cannot be seen (the receiver's SRTP drops the second copy and
NACKs only what both lost), so after a hold the pull gets one copy again: a probe. A probe
that finds loss doubles the hold; one that finds none ends it.
"""

from __future__ import annotations

from collections import deque

# aiortc's NACK generator asks again for what is still missing at each new gap, for a few
# seconds at most (audio); a 16-bit number comes round again only after minutes.
NACK_MEMORY_SECONDS = 10.0
# A window closes after this many packets: long enough that a clean link's stray loss does
# not look like 0.5 %, short enough (about 1.5 s of 720p) to switch before many repairs.
WINDOW_PACKETS = 500
LOSS_TRIGGER = 0.005  # the share of a window's packets NACKed that asks for two copies
MIN_LOST = 3
HOLD_SECONDS = 30.0
MAX_HOLD_SECONDS = 600.0
PROBE_SECONDS = 5.0


class Redundancy:
    """One peer's copies. `copies` 0 adapts to the loss observed; 1-3 are fixed."""

    def __init__(self, copies: int = 1) -> None:
        self.adaptive = copies == 0
        self.copies = copies or 1
        self.switches = 0  # times two copies were switched on (a snapshot's copies_raised)
        self._sent = 0  # packets sent in the current window
        self._lost = 0
        self._hold = HOLD_SECONDS
        self._until = 0.0  # two copies until then
        self._probe_until: float | None = None

    def observe(self, sent: int, lost: int, now: float) -> int:
        """`sent` packets sent and `lost` newly NACKed since the last call; returns the copies
        to send from now on."""
        if not self.adaptive:
            return self.copies
        if self.copies > 1:
            if now >= self._until:
                self.copies = 1
                self._probe_until = now + PROBE_SECONDS
                self._sent = self._lost = 0
            return self.copies
        self._sent += sent
        self._lost += lost
        if self._sent < WINDOW_PACKETS:
            return self.copies
        if self._lost >= MIN_LOST and self._lost >= LOSS_TRIGGER * self._sent:
            if self._probe_until is not None:
                self._hold = min(self._hold * 2, MAX_HOLD_SECONDS)
            self.copies = 2
            self.switches += 1
            self._until = now + self._hold
            self._probe_until = None
        elif self._probe_until is not None and now >= self._probe_until:
            self._hold = HOLD_SECONDS
            self._probe_until = None
        self._sent = self._lost = 0
        return self.copies


class FirstNacks:
    """Which of a receiver's NACKed sequence numbers it asks for the first time."""

    __slots__ = ("_recent", "_seqs")

    def __init__(self) -> None:
        self._recent: deque[tuple[float, int]] = deque()
        self._seqs: set[int] = set()

    def first(self, seq: int, now: float) -> bool:
        recent = self._recent
        while recent and recent[0][0] < now - NACK_MEMORY_SECONDS:
            self._seqs.discard(recent.popleft()[1])
        if seq in self._seqs:
            return False
        recent.append((now, seq))
        self._seqs.add(seq)
        return True
