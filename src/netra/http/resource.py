"""Resource: one WHIP or WHEP session, addressed by an unguessable URL, and what every such
session answers the same way: PATCH (trickle), DELETE, GET, OPTIONS (RFC 9725 §4.3).

The session URL is the capability: 192 random bits, so PATCH and DELETE need no token. On a
node of a cluster the id also names the node (`<random>~<node>`), so that a request reaching
another node (behind a balancer, or another worker on the same port) is forwarded to it
(netra.http.forward).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from time import monotonic

from aiohttp import web

from netra.agents.agent import Agent
from netra.cluster.owners import named
from netra.errors import NotFound, ProtocolError, UserError
from netra.http.forward import forwarded
from netra.http.sdpfrag import parse_fragment, session_ufrag, transport_mids
from netra.limits import RateLimit, check_capacity
from netra.services import SERVICES

logger = logging.getLogger("netra.http")

SDPFRAG = "application/trickle-ice-sdpfrag"
SSE_QUEUE = 64  # events held for a slow event-stream reader before it is dropped
# A session the server ended (its peer connection failed or closed, its stream ended) still
# answers its client's DELETE with 200 for this long: clients close their peer connection
# first and DELETE after, by which time the server may have noticed the close.
ENDED_GRACE_SECONDS = 60.0
MAX_ENDED = 10_000


class Resource:
    def __init__(
        self, kind: str, room_id: str, agent: Agent, offer: str, node: str | None = None
    ) -> None:
        self.id = named(secrets.token_urlsafe(24), node)
        self.kind = kind
        self.room_id = room_id
        self.path = f"/{kind}/{room_id}/{self.id}"
        self.agent = agent
        self.etag = f'"{secrets.token_hex(12)}"'  # strong: changes only on an ICE restart
        self.ufrag = session_ufrag(offer)
        self.transports = transport_mids(offer)  # mid → the mid that owns its transport
        self.closed = False
        self._streams: list[asyncio.Queue[tuple[str, dict[str, object]] | None]] = []

    # --- server-sent events (the WHEP events extension) --------------------------------------

    def subscribe(self) -> asyncio.Queue[tuple[str, dict[str, object]] | None]:
        queue: asyncio.Queue[tuple[str, dict[str, object]] | None] = asyncio.Queue(SSE_QUEUE)
        self._streams.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, dict[str, object]] | None]) -> None:
        if queue in self._streams:
            self._streams.remove(queue)

    def emit(self, event: str, data: dict[str, object]) -> None:
        for queue in list(self._streams):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                self._streams.remove(queue)  # a reader this far behind is gone

    def end_streams(self) -> None:
        for queue in self._streams:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._streams.clear()


class Resources:
    """Every live WHIP and WHEP session, by id, and what the HTTP doors may take: requests a
    second (`throttle`) and open sessions (`check_capacity`)."""

    def __init__(
        self, *, max_sessions: int, rate_limit: RateLimit, node: str | None = None
    ) -> None:
        self.max_sessions = max_sessions
        self.node = node  # a cluster node's name, which its sessions' ids carry
        self._rate_limit = rate_limit
        self._by_id: dict[str, Resource] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Sessions the server ended, by id: (kind, room, when the grace ends).
        self._ended: dict[str, tuple[str, str, float]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def throttle(self) -> None:
        """Every POST, PATCH and DELETE takes a token from the rate limit (429 past it)."""
        self._rate_limit.take()

    def check_capacity(self) -> None:
        check_capacity(len(self._by_id), self.max_sessions)

    def add(self, resource: Resource) -> None:
        self._by_id[resource.id] = resource

    def find(self, kind: str, room_id: str, resource_id: str) -> Resource:
        resource = self._by_id.get(resource_id)
        if resource is None or resource.kind != kind or resource.room_id != room_id:
            raise NotFound(f"no {kind.upper()} session at this URL (it ended, or never was)")
        return resource

    async def close(self, resource: Resource, reason: str) -> None:
        if resource.closed:
            return
        resource.closed = True
        self._by_id.pop(resource.id, None)
        resource.end_streams()
        await resource.agent.close(reason)

    def ended_recently(self, kind: str, room_id: str, resource_id: str) -> bool:
        """Whether the server itself ended this session within the grace period."""
        ended = self._ended.get(resource_id)
        return ended is not None and ended[:2] == (kind, room_id) and monotonic() < ended[2]

    def close_soon(self, resource: Resource, reason: str) -> None:
        """Close from inside the agent's own loop, which close() waits for (the server
        ends the session: its client may still DELETE it)."""
        now = monotonic()
        while self._ended and (
            len(self._ended) >= MAX_ENDED or next(iter(self._ended.values()))[2] < now
        ):
            del self._ended[next(iter(self._ended))]
        self._ended[resource.id] = (resource.kind, resource.room_id, now + ENDED_GRACE_SECONDS)
        task = asyncio.ensure_future(self.close(resource, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        for resource in list(self._by_id.values()):
            await self.close(resource, "server-shutdown")
        await asyncio.gather(*self._closing, return_exceptions=True)


RESOURCES = web.AppKey("netra.resources", Resources)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def require_content_type(request: web.Request, expected: str) -> None:
    if request.content_type != expected:
        raise ProtocolError(
            f"send Content-Type: {expected} (got {request.content_type or 'none'})",
            code="unsupported-media-type",
        )


def find_session(request: web.Request, kind: str) -> Resource:
    """The session a /{kind}/{room}/{id}… URL names, or NotFound."""
    match = request.match_info
    return request.app[RESOURCES].find(kind, match["room"], match["id"])


def session_routes(kind: str, on_delete: str) -> list[web.RouteDef]:
    """PATCH, DELETE, GET and OPTIONS on /{kind}/{room}/{id}."""
    path = f"/{kind}/{{room}}/{{id}}"

    def find(request: web.Request) -> Resource:
        return find_session(request, kind)

    async def patch(request: web.Request) -> web.Response:
        request.app[RESOURCES].throttle()
        resource = find(request)
        require_content_type(request, SDPFRAG)
        _check_if_match(request, resource, strict=request.app[SERVICES].config.whip_strict)
        try:
            body = await request.text()
        except UnicodeDecodeError:
            raise ProtocolError("the fragment is not UTF-8 text", code="invalid-sdp") from None
        fragment = parse_fragment(body)
        if fragment.ufrag is not None and fragment.ufrag != resource.ufrag:
            raise UserError(
                "ICE restart is not supported by this server (aiortc cannot restart ICE):"
                " DELETE this session and POST a new offer",
                code="ice-restart-unsupported",
            )
        for mid, candidate in fragment.candidates:
            # aiortc ignores a candidate tagged with a bundled section's mid, so it goes to
            # the section that owns the bundle's transport. A mid the offer does not have
            # (one library tags every candidate "1") means the first section's transport.
            owner = resource.transports.get(mid) if mid is not None else None
            try:
                await resource.agent.add_candidate(candidate, owner, 0 if owner is None else None)
            except ProtocolError:
                continue  # RFC 9725 §4.3.2: unusable candidates are dropped silently
        if fragment.end_of_candidates:
            await resource.agent.add_candidate(None, None, None)
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.Response:
        resources = request.app[RESOURCES]
        resources.throttle()
        match = request.match_info
        if resources.ended_recently(kind, match["room"], match["id"]):
            return web.Response(status=200)
        resource = find(request)
        await resources.close(resource, on_delete)
        return web.Response(status=200)  # exactly 200: OBS warns on anything else

    async def get(request: web.Request) -> web.Response:
        find(request)
        return web.Response(status=204)

    async def options(request: web.Request) -> web.Response:
        return web.Response(status=200, headers={"Accept-Patch": SDPFRAG})

    return [
        web.patch(path, forwarded(patch)),
        web.delete(path, forwarded(delete)),
        web.get(path, forwarded(get), allow_head=False),
        web.options(path, options),
    ]


def _check_if_match(request: web.Request, resource: Resource, *, strict: bool) -> None:
    """RFC 9725 §4.3.1 in strict mode. Leniently, a missing If-Match, or the request header
    `ETag:` that one library sends in its place, is accepted; a stale one never is."""
    given = request.headers.get("If-Match")
    if given is None and not strict:
        given = request.headers.get("ETag")
    if given is None:
        if strict:
            raise ProtocolError(
                "send If-Match with the session's ETag", code="precondition-required"
            )
        return
    if given.strip() not in ("*", resource.etag):
        raise ProtocolError(
            f"If-Match {given!r} does not match this session's ETag {resource.etag}",
            code="precondition-failed",
        )


def link_ice_servers(request: web.Request) -> list[str]:
    """One `Link: <…>; rel="ice-server"` per configured STUN/TURN URL (RFC 9725 §4.6)."""
    links = []
    for server in request.app[SERVICES].config.ice_servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None:
                link += f"; username={json.dumps(server.username)}"
                link += f"; credential={json.dumps(server.credential or '')}"
                link += '; credential-type="password"'
            links.append(link)
    return links
