"""Directory: which node is each room's origin, for every node of a cluster.

A room's origin is the node its streamer publishes to; every other node with viewers of the room
pulls the stream from the origin (netra.cluster.pull). One process keeps the directory in memory
(`LocalDirectory`, the default: it never imports Redis); a cluster keeps it in Redis
(netra.cluster.redis_directory). Claims there expire unless renewed, so a dead node's rooms free
themselves; everything a node holds it re-asserts after an outage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from netra.errors import UserError

# Told to a streamer while the cluster's directory cannot be reached.
DIRECTORY_RETRY_SECONDS = 2


@dataclass(frozen=True)
class Node:
    """One Netra process of a cluster, and where other nodes pull from it."""

    id: str
    relay_url: str


@dataclass(frozen=True)
class Origin:
    node: Node
    # Grows each time a room gets a new origin: an edge that sees it change pulls anew.
    epoch: int

    def encode(self) -> str:
        return json.dumps({"node": self.node.id, "relay": self.node.relay_url, "epoch": self.epoch})

    @staticmethod
    def decode(text: str | bytes) -> Origin:
        data = json.loads(text)
        return Origin(Node(str(data["node"]), str(data["relay"])), int(data["epoch"]))


class DirectoryListener(Protocol):
    """What a directory asks of its node, and tells it, once a tick."""

    def audiences(self) -> dict[str, int]:
        """This node's viewers, by room, for every room open here."""

    def remote_audiences(self, counts: dict[str, int]) -> None:
        """The other nodes' viewers of those rooms."""

    def lost(self, room: str) -> None:
        """Another node holds this room's origin claim now (after a Redis outage, or taken by a
        node this one did not answer)."""


class Directory(Protocol):
    node: Node

    async def start(self, listener: DirectoryListener) -> None: ...

    async def close(self) -> None:
        """Release every claim this node holds."""

    async def claim(self, room: str, replacing: str | None = None) -> Origin:
        """Make this node the room's origin, or return the origin another node is; the claim
        of the node `replacing` names (one that does not answer) is taken if that node has
        stopped ticking too. Raises `directory-unavailable` when it cannot tell."""

    def holds(self, room: str) -> bool:
        """Whether this node is the room's origin, as of its last tick."""

    async def release(self, room: str) -> None:
        """This node is no longer the room's origin (its stream ended)."""

    async def origins(self, rooms: Iterable[str]) -> dict[str, Origin]:
        """The origins of those rooms that have one."""

    async def node_url(self, node_id: str) -> str | None:
        """Where a live node of the cluster is reached (its relay URL); None if it is gone."""

    def snapshot(self) -> dict[str, object]: ...


def unavailable(why: str) -> UserError:
    return UserError(
        f"the cluster's directory cannot be reached ({why}); try again",
        code="directory-unavailable",
        retry_after=DIRECTORY_RETRY_SECONDS,
    )


class LocalDirectory:
    """One process: it is the origin of every room it claims, and of no other."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._epochs: dict[str, int] = {}
        self._held: dict[str, Origin] = {}

    async def start(self, listener: DirectoryListener) -> None:
        pass

    async def close(self) -> None:
        self._held.clear()

    async def claim(self, room: str, replacing: str | None = None) -> Origin:
        origin = self._held.get(room)
        if origin is None:
            epoch = self._epochs[room] = self._epochs.get(room, 0) + 1
            origin = self._held[room] = Origin(self.node, epoch)
        return origin

    def holds(self, room: str) -> bool:
        return room in self._held

    async def release(self, room: str) -> None:
        self._held.pop(room, None)

    async def origins(self, rooms: Iterable[str]) -> dict[str, Origin]:
        return {room: self._held[room] for room in rooms if room in self._held}

    async def node_url(self, node_id: str) -> str | None:
        return self.node.relay_url if node_id == self.node.id else None

    def snapshot(self) -> dict[str, object]:
        return {"kind": "local", "node": self.node.id, "origin_of": sorted(self._held)}
