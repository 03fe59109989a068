"""RedisDirectory: the cluster's directory in Redis (redis-py's asyncio client).

Keys (prefix `netra:`, values JSON):
- `node:{id}`: the node's relay URL, expiring NODE_TTL after the node's last tick;
- `origin:{room}`: the origin claim `{node, relay, epoch}`, set only if absent (one script, so
  that of any number of racing streamers exactly one wins), and expiring CLAIM_TTL after the
  holder's last renewal: a dead node's rooms free themselves. It is also taken from a holder
  that a claimant found not answering and that has not ticked for STALE_MS (a node killed: no
  need to wait for the expiry), and from this node's own previous process (the same id, another
  relay URL: a worker restarted);
- `epoch:{room}`: counts the room's origins;
- `audience:{room}`: a hash, node → `count:milliseconds`, each node's viewers of the room.

Each node ticks once a second with one script: it refreshes its node key, renews its claims
(re-setting any that Redis lost in a restart without persistence), writes its viewer counts
and reads the other nodes' (counts older than AUDIENCE_FRESH_MS are a dead node's and are
left out). At rest that is one operation per second per node. A claim found held by another
node is lost, and the node is told: one origin per room again within a tick of Redis coming
back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from netra.cluster.directory import DirectoryListener, Node, Origin, unavailable

logger = logging.getLogger("netra.cluster")

PREFIX = "netra:"
TICK_SECONDS = 1.0
NODE_TTL_MS = 5000
CLAIM_TTL_MS = 5000
AUDIENCE_FRESH_MS = 3000
# A node that has not ticked for this long, and does not answer, has lost its claims.
STALE_MS = 2000
# Each call gives up after this: a streamer is told to retry rather than wait on Redis.
TIMEOUT_SECONDS = 1.0

# KEYS: the claim, the room's epoch, the node key of ARGV[4]. ARGV: this node, its relay URL,
# the claim TTL, the node found not answering (or ""), the node TTL left once it is stale.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  local holder = cjson.decode(current)
  local gone = holder.node == ARGV[4] and redis.call('PTTL', KEYS[3]) < tonumber(ARGV[5])
  local previous = holder.node == ARGV[1] and holder.relay ~= ARGV[2]
  if not (gone or previous) then return current end
end
local epoch = redis.call('INCR', KEYS[2])
local value = cjson.encode({node = ARGV[1], relay = ARGV[2], epoch = epoch})
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
return value
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: the node key, the n claims held, then the audience hashes of the rooms open here.
# ARGV: node value, node TTL, claim TTL, n, the claims' values, node id, freshness, then this
# node's viewers of each room. Returns {per claim: 0 renewed, 1 re-set (Redis had lost it),
# 2 another's now; per room: the other nodes' fresh viewers}.
_TICK = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local n = tonumber(ARGV[4])
local claims = {}
for i = 1, n do
  local key, mine = KEYS[1 + i], ARGV[4 + i]
  local current = redis.call('GET', key)
  if current == mine then
    redis.call('PEXPIRE', key, ARGV[3])
    claims[i] = 0
  elseif not current then
    redis.call('SET', key, mine, 'PX', ARGV[3])
    claims[i] = 1
  else
    claims[i] = 2
  end
end
local id, fresh = ARGV[5 + n], tonumber(ARGV[6 + n])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local others = {}
for j = 1, #KEYS - 1 - n do
  local key, count = KEYS[1 + n + j], tonumber(ARGV[6 + n + j])
  if count > 0 then
    redis.call('HSET', key, id, count .. ':' .. now)
    redis.call('PEXPIRE', key, fresh * 2)
  else
    redis.call('HDEL', key, id)
  end
  local sum = 0
  local fields = redis.call('HGETALL', key)
  for k = 1, #fields, 2 do
    if fields[k] ~= id then
      local c, at = string.match(fields[k + 1], '(%d+):(%d+)')
      if c and now - tonumber(at) < fresh then sum = sum + tonumber(c) end
    end
  end
  others[j] = sum
end
return {claims, others}
"""


def origin_key(room: str) -> str:
    return f"{PREFIX}origin:{room}"


class RedisDirectory:
    def __init__(self, node: Node, url: str) -> None:
        self.node = node
        self.url = url
        self._redis = aioredis.from_url(
            url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            # A pooled connection that a Redis restart closed is retried once, on a new one.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._tick_script = self._redis.register_script(_TICK)
        self._held: dict[str, str] = {}  # room → the claim's value, as Redis holds it
        self._ticker: asyncio.Task[None] | None = None
        self._listener: DirectoryListener | None = None
        self._reported: set[str] = set()  # rooms whose viewers this node wrote last tick
        self._closing = False
        self.reachable = False
        self.operations = 0  # calls made to Redis, for the metrics and the load figures
        self.ticks = 0  # ticks that reached Redis

    async def start(self, listener: DirectoryListener) -> None:
        self._listener = listener
        try:
            await self.tick()
        except RedisError as exc:
            logger.warning("redis at %s: %s; retrying every %.0f s", self.url, exc, TICK_SECONDS)
        self._ticker = asyncio.create_task(self._tick_forever(), name="directory-tick")

    async def close(self) -> None:
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            # Python 3.11's wait_for can swallow a cancellation that lands as its call ends;
            # the flag stops the loop then, after at most one more tick.
            await asyncio.wait({self._ticker}, timeout=TICK_SECONDS + 2 * TIMEOUT_SECONDS)
        for room in list(self._held):
            try:
                await self.release(room)
            except Exception:  # leaving anyway: the claim expires by itself
                break
        await self._redis.aclose()

    async def claim(self, room: str, replacing: str | None = None) -> Origin:
        try:
            value = await self._call(
                self._claim(
                    keys=[
                        origin_key(room),
                        f"{PREFIX}epoch:{room}",
                        f"{PREFIX}node:{replacing or ''}",
                    ],
                    args=[
                        self.node.id, self.node.relay_url, CLAIM_TTL_MS,
                        replacing or "", NODE_TTL_MS - STALE_MS,
                    ],  # fmt: skip
                )
            )
        except (RedisError, OSError, TimeoutError) as exc:
            raise unavailable(str(exc) or type(exc).__name__) from None
        origin = Origin.decode(value)
        if origin.node.id == self.node.id:
            self._held[room] = value.decode() if isinstance(value, bytes) else value
        return origin

    def holds(self, room: str) -> bool:
        return room in self._held

    async def release(self, room: str) -> None:
        value = self._held.pop(room, None)
        if value is None:
            return
        try:
            await self._call(self._release(keys=[origin_key(room)], args=[value]))
        except (RedisError, OSError, TimeoutError) as exc:
            logger.info("room=%s releasing the origin claim failed (%s); it expires", room, exc)

    async def origins(self, rooms: Iterable[str]) -> dict[str, Origin]:
        wanted = list(rooms)
        if not wanted:
            return {}
        try:
            values = await self._call(self._redis.mget([origin_key(r) for r in wanted]))
        except (RedisError, OSError, TimeoutError) as exc:
            raise unavailable(str(exc) or type(exc).__name__) from None
        return {room: Origin.decode(v) for room, v in zip(wanted, values, strict=True) if v}

    async def node_url(self, node_id: str) -> str | None:
        try:
            value = await self._call(self._redis.get(f"{PREFIX}node:{node_id}"))
        except (RedisError, OSError, TimeoutError) as exc:
            raise unavailable(str(exc) or type(exc).__name__) from None
        return None if value is None else str(json.loads(value)["relay"])

    async def tick(self) -> None:
        listener = self._listener
        held = list(self._held)
        audiences = listener.audiences() if listener is not None else {}
        for gone in self._reported - audiences.keys():
            audiences[gone] = 0  # its count here goes
        counted = list(audiences)
        node = json.dumps({"relay": self.node.relay_url})
        claims, others = await self._call(
            self._tick_script(
                keys=[
                    f"{PREFIX}node:{self.node.id}",
                    *(origin_key(r) for r in held),
                    *(f"{PREFIX}audience:{r}" for r in counted),
                ],
                args=[
                    node, NODE_TTL_MS, CLAIM_TTL_MS, len(held), *(self._held[r] for r in held),
                    self.node.id, AUDIENCE_FRESH_MS, *(audiences[r] for r in counted),
                ],
            )
        )  # fmt: skip
        if not self.reachable:
            logger.info("redis at %s reachable; node %s registered", self.url, self.node.id)
        self.reachable = True
        self.ticks += 1
        self._reported = {room for room in counted if audiences[room] > 0}
        if listener is None:
            return
        listener.remote_audiences(dict(zip(counted, others, strict=True)))
        for room, result in zip(held, claims, strict=True):
            if result == 1:
                logger.info("room=%s origin claim re-asserted after redis lost it", room)
            elif result == 2 and self._held.pop(room, None) is not None:
                logger.warning("room=%s another node holds the origin claim now", room)
                listener.lost(room)

    async def _tick_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except (RedisError, OSError, TimeoutError) as exc:
                if self.reachable:
                    logger.warning("redis at %s unreachable: %s", self.url, exc)
                self.reachable = False

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        self.operations += 1
        return await asyncio.wait_for(awaitable, TIMEOUT_SECONDS)

    def snapshot(self) -> dict[str, object]:
        return {"kind": "redis", "node": self.node.id, "reachable": self.reachable,
                "origin_of": sorted(self._held), "operations": self.operations,
                "ticks": self.ticks}  # fmt: skip
