"""`--udp-ports LOW-HIGH`: every peer connection's media port is in the range."""

from __future__ import annotations

import re
from collections.abc import Iterator

import aioice.ice
import pytest

from netra.config import ConfigError, load_config

from .conftest import Peers

LOW, HIGH = 41000, 41009


@pytest.fixture(autouse=True)
def restore_aioice() -> Iterator[None]:
    """The range is process-wide: put aioice back for the tests that follow."""
    original = aioice.ice.asyncio
    yield
    aioice.ice.asyncio = original


def candidate_ports(sdp: str) -> set[int]:
    return {int(m[1]) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ", sdp)}


@pytest.mark.server_config(udp_ports=(LOW, HIGH))
async def test_the_server_offers_and_answers_only_ports_in_the_range(peers: Peers) -> None:
    publisher = await peers.publisher("show")
    await publisher.join_and_publish()
    viewer = await peers.viewer("show")
    await viewer.join()
    await viewer.watch(video=5, audio=5)
    answer = publisher.signaling.of_type("answer")[-1]["sdp"]
    offer = viewer.signaling.of_type("offer")[-1]["sdp"]
    ports = candidate_ports(answer) | candidate_ports(offer)
    assert ports and all(LOW <= port <= HIGH for port in ports), ports


@pytest.mark.parametrize(
    ("text", "expected"), [("40000-40099", (40000, 40099)), ("40000", (40000, 40000))]
)
def test_a_range_or_a_single_port_is_accepted(text: str, expected: tuple[int, int]) -> None:
    assert load_config(udp_ports=text).udp_ports == expected


@pytest.mark.parametrize("text", ["40100-40000", "0-10", "abc", "40000-70000"])
def test_a_bad_range_is_refused_with_its_flag_named(text: str) -> None:
    with pytest.raises(ConfigError, match="--udp-ports"):
        load_config(udp_ports=text)
