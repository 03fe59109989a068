"""Relays: this node's pulls of the rooms whose origin is another node.

A room with viewers here and no streamer here is *wanted*. Once a second, and at once when a
viewer joins one, the relays look the wanted rooms up in the directory and pull each that has
an origin elsewhere (RelayAgent); a room whose streamer has not gone live anywhere yet is looked
up again at the next tick. A pull ends when its origin does, when the directory names a new
origin (a higher epoch), when a streamer publishes the room here, or `linger` seconds after its
last viewer left (as OvenMediaEngine and MediaMTX drop idle pulls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from time import monotonic
from typing import Any

import aiohttp

from netra.agents.agent import AgentContext
from netra.agents.relay import RelayAgent
from netra.cluster.directory import Node, Origin
from netra.errors import NetraError
from netra.rooms.participant import Participant
from netra.rooms.room import Room

logger = logging.getLogger("netra.cluster")

TICK_SECONDS = 1.0
# Nodes are on one network: a node that takes longer to answer a probe is taken for gone.
PROBE_SECONDS = 1.0


class _Ears:
    """A relay's AgentListener: only the end of its stream matters to the relays."""

    def __init__(self, relays: Relays, room_id: str) -> None:
        self._relays, self._room_id = relays, room_id

    def stream_ended(self, reason: str) -> None:
        self._relays.ended(self._room_id)

    def peer_lost(self) -> None:
        self._relays.ended(self._room_id)

    def failed(self, error: NetraError) -> None:
        logger.info("room=%s relay: %s %s", self._room_id, error.code, error.message)

    def joined(self, room: Room, participant: Participant) -> None: ...
    def offer(self, sdp: str) -> None: ...
    def stream_started(self) -> None: ...
    def viewers_changed(self, count: int) -> None: ...
    def stream_stalled(self, reason: str) -> None: ...
    def stream_resumed(self) -> None: ...


class Relays:
    def __init__(self, context: AgentContext, *, linger: float) -> None:
        self._context = context
        self._directory = context.directory
        self._linger = linger
        self._pulls: dict[str, RelayAgent] = {}
        self._idle_since: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        # A new connection for each probe, as a new client makes: a pooled one can outlive
        # the listener it came from.
        self._probes: aiohttp.ClientSession | None = None
        self._closing = False

    def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._probes = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        self._loop = asyncio.create_task(self._run(), name="relays")

    async def close(self) -> None:
        self._closing = True
        if self._loop is not None:
            self._loop.cancel()
            # Python 3.11's wait_for can swallow a cancellation that lands as it returns:
            # the flag ends the loop then.
            self._wake.set()
            await asyncio.wait({self._loop}, timeout=2 * TICK_SECONDS)
        pulls, self._pulls = list(self._pulls.values()), {}
        await asyncio.gather(*(agent.close("server-shutdown") for agent in pulls))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._probes is not None:
            await self._probes.close()

    def want(self) -> None:
        """A viewer joined a room that has no streamer here: look now, not at the next tick."""
        self._wake.set()

    async def stop(self, room_id: str) -> None:
        """A streamer publishes the room here: its pull ends."""
        agent = self._pulls.pop(room_id, None)
        if agent is not None:
            await agent.close("streamer-here")

    def ended(self, room_id: str) -> None:
        """A pull's stream ended (its origin's did, or the link failed): let it go, and look
        for the room's origin again at once."""
        agent = self._pulls.pop(room_id, None)
        if agent is not None:
            self._spawn(agent.close("origin-lost"))
        self._wake.set()

    def snapshot(self) -> dict[str, object]:
        return {room: agent.origin.node.id for room, agent in self._pulls.items()}

    async def answers(self, node: Node) -> bool:
        """Whether another node is there: its health check answers within PROBE_SECONDS."""
        if self._probes is None or self._closing:
            return True  # not started, or stopping: nothing known
        timeout = aiohttp.ClientTimeout(total=PROBE_SECONDS)
        try:
            async with self._probes.get(f"{node.relay_url}/healthz", timeout=timeout):
                return True
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            try:
                await self._look()
            except NetraError as exc:  # the directory is away: pulls carry on as they are
                logger.info("relays: %s", exc.message)
            except Exception:
                logger.exception("relays: internal error")

    async def _look(self) -> None:
        rooms = self._context.rooms
        now = monotonic()
        for room_id in list(self._pulls):
            room = rooms.get(room_id)
            if room is not None and room.audience > 0:
                self._idle_since.pop(room_id, None)
            elif now - self._idle_since.setdefault(room_id, now) >= self._linger:
                logger.info("room=%s no viewer for %.0f s: the pull ends", room_id, self._linger)
                self._drop(room_id, "no-viewers")
        wanted = [r.id for r in rooms if r.audience > 0 and r.streamer is None]
        if not wanted and not self._pulls:
            return
        origins = await self._directory.origins([*wanted, *self._pulls])
        for room_id, agent in list(self._pulls.items()):
            origin = origins.get(room_id)
            if origin is None or origin.epoch != agent.origin.epoch:
                logger.info("room=%s its origin changed: the pull ends", room_id)
                self._drop(room_id, "origin-changed")
        for room_id in wanted:
            origin = origins.get(room_id)
            if origin is not None and origin.node.id != self._directory.node.id:
                self._pull(room_id, origin)

    def _pull(self, room_id: str, origin: Origin) -> None:
        assert self._http is not None
        agent = RelayAgent(
            self._context, _Ears(self, room_id), origin=origin, http=self._http
        )
        self._pulls[room_id] = agent

        async def pull() -> None:
            try:
                await agent.join(room_id)
                await agent.pull()
            except NetraError as exc:
                logger.info("room=%s pull from node %s: %s", room_id, origin.node.id, exc.message)
                if self._pulls.get(room_id) is agent:
                    del self._pulls[room_id]
                await agent.close("pull-failed")

        self._spawn(pull())

    def _drop(self, room_id: str, reason: str) -> None:
        self._idle_since.pop(room_id, None)
        agent = self._pulls.pop(room_id, None)
        if agent is not None:
            self._spawn(agent.close(reason))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
