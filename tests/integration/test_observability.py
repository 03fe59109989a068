"""What an operator sees: /metrics for a live room, /healthz and /readyz, and the collector's
counters that must never go backwards."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netra.app import RETRY_AFTER_SECONDS, create_app
from netra.config import Config
from netra.http.resource import RESOURCES
from netra.observability.metrics import Tally, create_registry
from netra.services import SERVICES

from .conftest import Peers, Server
from .peers import TEST_SECRET, token
from .whip_clients import HttpClients

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if key not in samples:
        like = sorted(f"{n}{dict(ls)}" for n, ls in samples if n == name)
        raise AssertionError(f"no sample {name}{labels}; {name} has {like or 'none'}")
    return samples[key]


async def scrape(server: Server) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


async def get(server: Server, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        return response.status, await response.text()


async def test_metrics_show_a_live_room_its_clients_and_packets_forwarded_as_they_grow(
    server: Server, peers: Peers
) -> None:
    publisher = await peers.publisher("on-air")
    await publisher.join_and_publish()
    viewer = await peers.viewer("on-air")
    await viewer.join()
    reception = await viewer.watch(video=5, audio=5)

    first = await scrape(server)
    assert value(first, "netra_rooms") == 1
    assert value(first, "netra_live_streams") == 1
    assert value(first, "netra_clients", role="viewer", via="ws") == 1
    assert value(first, "netra_clients", role="streamer", via="ws") == 1
    assert value(first, "netra_clients", role="viewer", via="whep") == 0
    assert value(first, "netra_peer_connections", state="connected") == 2
    assert value(first, "netra_websockets") == 2
    assert value(first, "netra_whip_whep_sessions") == 0
    for kind in ("audio", "video"):
        assert value(first, "netra_publications", kind=kind) == 1
        assert value(first, "netra_subscriptions", kind=kind) == 1
        assert value(first, "netra_received_packets_total", kind=kind) > 0
        assert value(first, "netra_forwarded_packets_total", kind=kind) > 0
        assert value(first, "netra_send_failures_total", kind=kind) == 0
    assert value(first, "netra_received_keyframes_total", kind="video") >= 1
    assert value(first, "netra_event_loop_lag_max_seconds") >= 0
    assert value(first, "process_resident_memory_bytes") > 0

    await reception.wait_more_frames(video=10)
    second = await scrape(server)
    for name in ("netra_received_packets_total", "netra_forwarded_packets_total"):
        assert value(second, name, kind="video") > value(first, name, kind="video"), name


@pytest.mark.parametrize(
    "path", [pytest.param("native", marks=pytest.mark.server_config(fanout="native")),
             pytest.param("python", marks=pytest.mark.server_config(fanout="python"))],
)  # fmt: skip
async def test_the_fanout_path_asked_for_is_the_one_every_viewer_is_sent_through(
    server: Server, peers: Peers, path: str
) -> None:
    publisher = await peers.publisher("path")
    await publisher.join_and_publish()
    viewer = await peers.viewer("path")
    await viewer.join()
    await viewer.watch(video=5, audio=5)
    assert value(await scrape(server), "netra_fanout_info", path=path) == 1
    async with aiohttp.ClientSession() as http, http.get(
        server.url + "/api/rooms", headers={"Authorization": f"Bearer {token(admin=True)}"}
    ) as response:
        rooms = await response.json()
    subscriptions = [
        s for room in rooms["rooms"] for p in room["publications"] for s in p["subscriptions"]
    ]
    assert [(s["kind"], s["fanout"]) for s in sorted(subscriptions, key=lambda s: s["kind"])] == [
        ("audio", path), ("video", path)
    ]
    assert all(s["packets"] > 0 and s["send_failures"] == 0 for s in subscriptions)


async def test_forwarded_totals_do_not_go_backwards_when_the_viewer_leaves(
    server: Server, peers: Peers
) -> None:
    publisher = await peers.publisher("leaving")
    await publisher.join_and_publish()
    viewer = await peers.viewer("leaving")
    await viewer.join()
    await viewer.watch(video=5, audio=5)
    before = await scrape(server)

    await viewer.signaling.send({"type": "leave"})
    await viewer.reception.wait_closed_by_server()
    after = await scrape(server)
    assert value(after, "netra_subscriptions", kind="video") == 0
    assert value(after, "netra_clients", role="viewer", via="ws") == 0
    for kind in ("audio", "video"):
        forwarded = value(after, "netra_forwarded_packets_total", kind=kind)
        assert forwarded >= value(before, "netra_forwarded_packets_total", kind=kind) > 0


async def test_a_malformed_message_is_counted_by_its_error_code(
    server: Server, peers: Peers
) -> None:
    client = await peers.signaling()
    await client.send({"type": 5})  # no string type: bad-json (docs/protocol.md)
    assert (await client.next_message("error"))["code"] == "bad-json"
    assert value(await scrape(server), "netra_errors_total", code="bad-json") == 1


async def test_healthz_and_readyz_answer_ok_while_the_server_runs(server: Server) -> None:
    assert await get(server, "/healthz") == (200, "ok\n")
    assert await get(server, "/readyz") == (200, "ok\n")


async def test_whip_and_whep_clients_are_counted_by_protocol_and_shutdown_closes_them_all(
    server: Server, peers: Peers
) -> None:
    async with HttpClients(server.url) as http:
        await http.publishing("mixed")
        player = await http.playing("mixed")
        client = await peers.signaling()
        await client.send({"type": "join", "roomId": "mixed", "role": "viewer"})
        await client.next_message("joined")
        live = await scrape(server)
        assert value(live, "netra_clients", role="streamer", via="whip") == 1
        assert value(live, "netra_clients", role="viewer", via="whep") == 1
        assert value(live, "netra_clients", role="viewer", via="ws") == 1
        assert value(live, "netra_whip_whep_sessions") == 2

        await server.app.shutdown()  # what SIGTERM or SIGINT starts (netra.app._serve)
        goodbye = await client.next_message("server-shutdown")
        assert goodbye["retryAfter"] == RETRY_AFTER_SECONDS
        assert await client.wait_closed() == 1001
        await player.reception.wait_closed_by_server()
        # The listener is still open here (a signal closes it first): readiness says no.
        assert await get(server, "/readyz") == (503, "shutting down\n")
        assert await get(server, "/healthz") == (200, "ok\n")
        gone = await scrape(server)
        assert value(gone, "netra_rooms") == 0
        assert value(gone, "netra_whip_whep_sessions") == 0
        assert value(gone, "netra_peer_connections", state="connected") == 0


def test_events_export_as_counters_errors_by_code_and_any_name_safely() -> None:
    app = create_app(Config(host="127.0.0.1", port=0, auth_secret=TEST_SECRET))
    services = app[SERVICES]
    events = services.context.events
    events.update({"error:bad-json": 2, "error:room-full": 1, "resumes": 3, "stalls": 1})
    # Names no one has thought of: not valid in a metric name, or one /metrics already has.
    events.update({"odd name/ü": 1, "rooms": 4, "clients_total": 5})

    samples = parse(generate_latest(create_registry(services, app[RESOURCES])).decode())
    assert value(samples, "netra_errors_total", code="bad-json") == 2
    assert value(samples, "netra_errors_total", code="room-full") == 1
    assert value(samples, "netra_resumes_total") == 3
    assert value(samples, "netra_stalls_total") == 1
    assert value(samples, "netra_odd_name___total") == 1
    assert value(samples, "netra_event_rooms_total") == 4
    assert value(samples, "netra_rooms") == 0  # the gauge is untouched
    assert value(samples, "netra_event_clients_total") == 5
    assert value(samples, "netra_whip_whep_sessions_limit") == 500
    # The event loop's lag is left out until it has been measured, not reported as zero.
    assert not any(name.startswith("netra_event_loop_lag") for name, _ in samples)


def test_a_tally_keeps_what_closed_objects_counted_and_never_goes_backwards() -> None:
    tally = Tally(("packets", "packets_lost"))
    seen = {
        "a": ("video", {"packets": 100, "packets_lost": 5}),
        "b": ("video", {"packets": 50, "packets_lost": 0}),
    }
    assert tally.update(seen)["video", "packets"] == 150
    # b closed; a's reported loss went down (duplicates count as negative loss).
    totals = tally.update({"a": ("video", {"packets": 120, "packets_lost": 3})})
    assert totals["video", "packets"] == 170 and totals["video", "packets_lost"] == 5
    # A new object under a's key (a new stream in the same room) starts from zero.
    totals = tally.update({"a": ("video", {"packets": 10, "packets_lost": 0})})
    assert totals["video", "packets"] == 180 and totals["video", "packets_lost"] == 5
    assert tally.update({})["video", "packets"] == 180
