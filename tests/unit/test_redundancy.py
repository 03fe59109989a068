"""A pull's copies follow the loss its NACKs report (netra.media.redundancy)."""

from __future__ import annotations

import random

from netra.media.redundancy import (
    HOLD_SECONDS,
    NACK_MEMORY_SECONDS,
    PROBE_SECONDS,
    WINDOW_PACKETS,
    FirstNacks,
    Redundancy,
)

PACKETS_PER_SECOND = 350  # a 720p stream's audio and video
STEP = 0.05  # seconds between reports


class Link:
    """Sends a pull's packets over a link that loses `loss` of them, reporting to the policy
    every STEP as the pull's RTCP does; records the copies it was told to send."""

    def __init__(self, redundancy: Redundancy, loss: float, seed: int = 1) -> None:
        self.redundancy = redundancy
        self.loss = loss
        self.now = 0.0
        self.timeline: list[tuple[float, int]] = []
        self._random = random.Random(seed)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.now += STEP
            sent = round(PACKETS_PER_SECOND * STEP)
            copies = self.redundancy.copies
            # Under two copies a packet is NACKed only when both are lost.
            lost = sum(self._random.random() < self.loss**copies for _ in range(sent))
            self.timeline.append((self.now, self.redundancy.observe(sent, lost, self.now)))

    def seconds_at(self, copies: int, since: float = 0.0) -> float:
        return STEP * sum(c == copies for t, c in self.timeline if t > since)


def test_a_clean_link_gets_one_copy() -> None:
    link = Link(Redundancy(0), loss=0.0)
    link.run(120)
    assert link.seconds_at(2) == 0


def test_a_stray_loss_on_a_good_link_does_not_double_the_pull() -> None:
    link = Link(Redundancy(0), loss=0.0005)  # one packet in 2,000
    link.run(300)
    assert link.seconds_at(2) < 0.1 * 300, link.redundancy.switches


def test_a_link_losing_one_percent_gets_two_copies_within_seconds_and_keeps_them() -> None:
    link = Link(Redundancy(0), loss=0.01)
    link.run(600)
    raised = next(t for t, copies in link.timeline if copies == 2)
    window = WINDOW_PACKETS / PACKETS_PER_SECOND
    assert raised <= 3 * window, raised
    # Probes after each hold find the loss again, so the hold doubles: one copy is a probe's
    # few seconds now and then, not a share of the time.
    assert link.seconds_at(1, since=raised) < 0.03 * (600 - raised)
    assert link.redundancy.switches >= 3


def test_a_link_that_heals_returns_to_one_copy_after_the_hold() -> None:
    redundancy = Redundancy(0)
    link = Link(redundancy, loss=0.02)
    link.run(10)
    assert redundancy.copies == 2
    link.loss = 0.0
    link.run(HOLD_SECONDS + PROBE_SECONDS + 5)
    assert redundancy.copies == 1
    link.run(600)
    assert redundancy.copies == 1 and redundancy.switches == 1


def test_fixed_copies_ignore_loss() -> None:
    for copies in (1, 2, 3):
        link = Link(Redundancy(copies), loss=0.05 if copies == 1 else 0.0)
        link.run(60)
        assert {c for _, c in link.timeline} == {copies}


def test_a_sequence_number_counts_once_however_often_it_is_nacked() -> None:
    nacked = FirstNacks()
    # aiortc asks again for everything still missing each time it finds a new gap.
    asked = [[7], [7, 9], [7, 9, 12], [65535, 0, 7]]
    firsts = [[s for s in nack if nacked.first(s, now=0.1 * i)] for i, nack in enumerate(asked)]
    assert firsts == [[7], [9], [12], [65535, 0]]


def test_a_sequence_number_counts_again_when_it_comes_round_after_minutes() -> None:
    nacked = FirstNacks()
    assert nacked.first(1000, now=0.0)
    assert not nacked.first(1000, now=NACK_MEMORY_SECONDS - 1)
    assert nacked.first(1000, now=200.0)  # 65,536 packets later: another packet
