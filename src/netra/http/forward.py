"""A WHIP or WHEP session's request that reached the wrong node of a cluster (behind a
balancer, or another worker on the same port) is forwarded to the node whose name the session
id carries, and the answer streamed back, the WHEP event stream included. One process, and a
request already forwarded once, are served where they land.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from netra.cluster.owners import FORWARDED, owner_node
from netra.errors import NotFound
from netra.services import SERVICES

# Not passed on: they describe one hop, not the request (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length",
     "te", "trailer", "proxy-authorization", "proxy-authenticate"}
)  # fmt: skip
CONNECT_SECONDS = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def forwarded(handler: Handler) -> Handler:
    """`handler` where the session lives here; a forward to its node elsewhere."""

    async def handle(request: web.Request) -> web.StreamResponse:
        context = request.app[SERVICES].context
        owner = owner_node(request.match_info["id"])
        here = context.directory.node.id
        if context.relays is None or owner in (None, here) or FORWARDED in request.headers:
            return await handler(request)
        assert owner is not None
        url = await context.directory.node_url(owner)
        if url is None:
            raise NotFound(f"this session's node ({owner}) is gone")
        return await _forward(request, url, here)

    return handle


async def _forward(request: web.Request, base_url: str, here: str) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers[FORWARDED] = here
    body = await request.read()
    # No total timeout: the WHEP event stream lasts as long as its session.
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            upstream_cm = http.request(
                request.method, base_url + request.path_qs, data=body or None, headers=headers
            )
            async with upstream_cm as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={
                        k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                    },
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientConnectionError, TimeoutError):
            raise NotFound("this session's node cannot be reached") from None
