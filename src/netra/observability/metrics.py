"""`GET /metrics`: what the server holds and what it has counted, in Prometheus' text format.

Nothing on the forwarding path knows about Prometheus: a Collector reads the same `snapshot()`s
that `/api/rooms` serves, at scrape time, and the hot path keeps its plain integer counters.
Every app has its own CollectorRegistry, so that apps in one process (the tests) stay apart.

Packet counters live on publications and subscriptions, which close with their stream or
viewer. Summed as they stand, a total would drop whenever one closes, and Prometheus reads a
drop as a counter reset (rate() would then count the whole remainder again). So a Tally keeps
each object's count as of the last scrape and folds it into a closed total when the object is
gone: the totals never go backwards, at the price of missing what a closed object counted
between the last scrape and its end.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from netra.media import fanout
from netra.rooms.participant import Role

if TYPE_CHECKING:
    from netra.http.resource import Resources
    from netra.media import fanout
from netra.services import Services

VIAS = ("ws", "whip", "whep", "relay")
PEER_STATES = ("new", "connecting", "connected", "disconnected", "failed", "closed")
KINDS = ("audio", "video")

# Snapshot field → (metric name, help), per publication (what streamers send) and per
# subscription (what each viewer is sent and says).
PUBLICATION_COUNTERS = {
    "packets": ("netra_received_packets", "RTP packets received from streamers"),
    "bytes": ("netra_received_payload_bytes", "RTP payload bytes received from streamers"),
    "keyframes": ("netra_received_keyframes", "Keyframes received from streamers"),
    "keyframe_requests": (
        "netra_keyframe_requests_sent",
        "Keyframe requests (PLI) sent to streamers, after coalescing",
    ),
    "catch_ups": (
        "netra_catch_ups",
        "Viewers started with a replay of the current group of pictures",
    ),
    "forward_errors": ("netra_forward_errors", "Packets whose forwarding raised (a bug)"),
}
SUBSCRIPTION_COUNTERS = {
    "packets": ("netra_forwarded_packets", "RTP packets sent to viewers"),
    "octets": ("netra_forwarded_bytes", "RTP bytes after the fixed header sent to viewers"),
    "dropped": (
        "netra_dropped_packets",
        "Video packets not sent to a viewer while it waited for a keyframe",
    ),
    "send_failures": ("netra_send_failures", "Packets to viewers that could not be sent"),
    "blocked": (
        "netra_blocked_sends",
        "Packets to viewers not sent because the socket's buffer was full (viewer resynced)",
    ),
    "packets_lost": ("netra_lost_packets", "Packets viewers reported lost (RTCP receiver reports)"),
    "nacks": ("netra_nacks_received", "NACKs received from viewers"),
    "retransmitted": ("netra_retransmitted_packets", "Packets resent to viewers on a NACK"),
    "retransmits_refused": (
        "netra_retransmits_refused",
        "NACKed packets not resent: gone from the history or over the viewer's budget",
    ),
    "retransmits_awaited": (
        "netra_retransmits_awaited",
        "NACKed packets this node had not received yet: sent on when its own repair brings them",
    ),
    "resyncs": ("netra_resyncs", "Times a viewer's video was resumed at the next keyframe"),
    "keyframe_requests": (
        "netra_keyframe_requests_received",
        "Keyframe requests (PLI, FIR) received from viewers",
    ),
}

_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_]")


def create_registry(services: Services, resources: Resources) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(NetraCollector(services, resources))
    ProcessCollector(registry=registry)  # CPU seconds, resident memory, open descriptors
    return registry


class Tally:
    """Totals per (kind, field) over objects that come and go, that never go backwards.

    An object is known by a key that stays the same while it lives; `identity` names a field
    that only grows, so that a smaller value under a known key is a new object (a new stream
    in the same room). Each field of a living object is held at its highest value: a viewer's
    cumulative loss can go down (RFC 3550 §6.4.1 counts duplicates as negative loss)."""

    def __init__(self, fields: tuple[str, ...], identity: str = "packets") -> None:
        self._fields = fields
        self._identity = identity
        self._last: dict[Hashable, tuple[str, dict[str, int]]] = {}
        self._closed: defaultdict[tuple[str, str], int] = defaultdict(int)

    def update(
        self, seen: Mapping[Hashable, tuple[str, Mapping[str, Any]]]
    ) -> dict[tuple[str, str], int]:
        """`seen`: key → (kind, snapshot) of every object alive now. Returns the totals."""
        current: dict[Hashable, tuple[str, dict[str, int]]] = {}
        for key, (kind, snapshot) in seen.items():
            counts = {field: max(0, int(snapshot.get(field) or 0)) for field in self._fields}
            last = self._last.pop(key, None)
            if last is not None:
                if counts[self._identity] < last[1][self._identity]:
                    self._fold(*last)
                else:
                    counts = {field: max(n, last[1][field]) for field, n in counts.items()}
            current[key] = (kind, counts)
        for gone in self._last.values():
            self._fold(*gone)
        self._last = current
        totals = defaultdict(int, self._closed)
        for kind, counts in current.values():
            for field, n in counts.items():
                totals[kind, field] += n
        return totals

    def _fold(self, kind: str, counts: dict[str, int]) -> None:
        for field, n in counts.items():
            self._closed[kind, field] += n


class NetraCollector:
    def __init__(self, services: Services, resources: Resources) -> None:
        self._services = services
        self._resources = resources
        self._publications = Tally(tuple(PUBLICATION_COUNTERS))
        self._subscriptions = Tally(tuple(SUBSCRIPTION_COUNTERS))

    def collect(self) -> Iterator[Metric]:
        rooms = self._services.context.rooms.snapshot()
        fixed = [*self._state(rooms), *self._media(rooms), *self._loop_lag()]
        yield from fixed
        yield from self._events({family.name for family in fixed})

    def _state(self, rooms: list[dict[str, Any]]) -> Iterator[Metric]:
        services = self._services
        participants = [p for room in rooms for p in room["participants"]]
        yield GaugeMetricFamily("netra_rooms", "Rooms open", value=len(rooms))
        yield GaugeMetricFamily(
            "netra_live_streams",
            "Rooms with a live stream",
            value=sum(1 for r in rooms if r["live"]),
        )
        clients = GaugeMetricFamily(
            "netra_clients", "Participants in rooms, by role and way in", labels=["role", "via"]
        )
        by_role_via = Counter((str(p["role"]), str(p["via"])) for p in participants)
        for role in Role:
            for via in VIAS:
                by_role_via.setdefault((str(role), via), 0)
        for labels, n in sorted(by_role_via.items()):
            clients.add_metric(labels, n)
        yield clients
        peers = GaugeMetricFamily(
            "netra_peer_connections", "Participants' peer connections, by state", labels=["state"]
        )
        by_state = Counter(str(p["peer"]) for p in participants if p.get("peer") is not None)
        for state in PEER_STATES:
            by_state.setdefault(state, 0)
        for state, n in sorted(by_state.items()):
            peers.add_metric([state], n)
        yield peers
        yield GaugeMetricFamily(
            "netra_clients_away",
            "WebSocket participants whose socket dropped, kept for them to resume",
            value=sum(1 for p in participants if p.get("attached") is False),
        )
        yield GaugeMetricFamily(
            "netra_websockets", "Open signaling WebSockets", value=len(services.sockets)
        )
        yield GaugeMetricFamily(
            "netra_whip_whep_sessions", "Open WHIP and WHEP sessions", value=len(self._resources)
        )
        yield GaugeMetricFamily(
            "netra_whip_whep_sessions_limit",
            "WHIP and WHEP sessions past which POST answers 503",
            value=self._resources.max_sessions,
        )

    def _media(self, rooms: list[dict[str, Any]]) -> Iterator[Metric]:
        path = GaugeMetricFamily(
            "netra_fanout_info", "The per-viewer forwarding path in use", labels=["path"]
        )
        path.add_metric(["native" if fanout.native() else "python"], 1)
        yield path
        publications: dict[Hashable, tuple[str, Mapping[str, Any]]] = {}
        subscriptions: dict[Hashable, tuple[str, Mapping[str, Any]]] = {}
        for room in rooms:
            for publication in room["publications"]:
                kind = publication["kind"]
                # A publication lives as long as its stream (it adopts a reconnecting
                # streamer's new track), so room and kind name it; a subscription has an
                # SSRC of its own.
                publications[room["id"], kind] = (kind, publication)
                for subscription in publication["subscriptions"]:
                    subscriptions[room["id"], kind, subscription["ssrc"]] = (kind, subscription)
        yield _gauge_by_kind(
            "netra_publications",
            "Tracks streamers publish",
            Counter(k for k, _ in publications.values()),
        )
        yield _gauge_by_kind(
            "netra_subscriptions",
            "Viewers' copies of tracks",
            Counter(k for k, _ in subscriptions.values()),
        )
        for tally, seen, specs in (
            (self._publications, publications, PUBLICATION_COUNTERS),
            (self._subscriptions, subscriptions, SUBSCRIPTION_COUNTERS),
        ):
            totals = tally.update(seen)
            for field, (name, help_text) in specs.items():
                family = CounterMetricFamily(name, help_text, labels=["kind"])
                for kind in KINDS:
                    family.add_metric([kind], totals.get((kind, field), 0))
                yield family

    def _loop_lag(self) -> Iterator[Metric]:
        lag = self._services.loop_lag.snapshot()
        for key, name, help_text in (
            ("max_ms", "netra_event_loop_lag_max_seconds", "Worst event-loop lateness"),
            (
                "p99_ms",
                "netra_event_loop_lag_p99_seconds",
                "99th percentile of event-loop lateness",
            ),
        ):
            value = lag.get(key)
            if value is not None:  # no sample yet
                yield GaugeMetricFamily(name, f"{help_text}, last 10 s", value=value / 1000)

    def _events(self, taken: set[str]) -> Iterator[Metric]:
        """`error:<code>` as one family labelled by code, every other event as its own
        counter. Event names come from all over the code, so each is made a valid metric
        name, and one that would collide with a family above gets `event_` in front."""
        errors = CounterMetricFamily(
            "netra_errors", "Errors sent to clients, by code", labels=["code"]
        )
        others: defaultdict[str, float] = defaultdict(float)
        taken = taken | {"netra_errors"}
        for key, count in sorted(self._services.context.events.items()):
            if key.startswith("error:"):
                errors.add_metric([key.removeprefix("error:")], count)
                continue
            # As the family would name itself: a `_total` on the key is the sample suffix.
            stem = _NOT_IN_A_NAME.sub("_", key).removesuffix("_total")
            name = "netra_" + stem if "netra_" + stem not in taken else "netra_event_" + stem
            others[name] += count
        yield errors
        for name, total in others.items():
            yield CounterMetricFamily(
                name, "Times this happened (AgentContext.events)", value=total
            )


def _gauge_by_kind(name: str, help_text: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["kind"])
    for kind in KINDS:
        family.add_metric([kind], counts.get(kind, 0))
    return family
