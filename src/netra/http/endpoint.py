"""The endpoint URL of WHIP and WHEP, /{kind}/{room}: POST an offer, get a session.

Both protocols take an `application/sdp` offer here, let an agent join the room (the token
check is the agent's) and negotiate, and answer exactly 201 with the answer, Location, ETag and
one Link per ICE server (RFC 9725 §4.2, §4.6). What differs is the agent, how it negotiates,
and what its listener does with the room's news: whip.py and whep.py say that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from netra.agents.agent import Agent, AgentContext
from netra.errors import NetraError
from netra.http.offer import read_offer, room_id
from netra.http.resource import (
    RESOURCES,
    Resource,
    Resources,
    bearer_token,
    link_ice_servers,
    require_content_type,
)
from netra.rooms.participant import Participant
from netra.rooms.room import Room
from netra.services import SERVICES

logger = logging.getLogger("netra.http")

A = TypeVar("A", bound=Agent)


class SessionEars:
    """An HTTP session's AgentListener: it hears nothing unless a protocol says otherwise
    (an HTTP client has no channel for most room news), and logs what failed."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self.resource: Resource | None = None

    def end_session(self, reason: str) -> None:
        """The server ends the session (its client may still DELETE it)."""
        if self.resource is not None:
            self._resources.close_soon(self.resource, reason)

    def joined(self, room: Room, participant: Participant) -> None:
        pass

    def offer(self, sdp: str) -> None:
        pass

    def stream_started(self) -> None:
        pass

    def stream_ended(self, reason: str) -> None:
        pass

    def viewers_changed(self, count: int) -> None:
        pass

    def stream_stalled(self, reason: str) -> None:
        pass

    def stream_resumed(self) -> None:
        pass

    def peer_lost(self) -> None:
        pass

    def failed(self, error: NetraError) -> None:
        path = self.resource.path if self.resource is not None else "-"
        logger.info("session %s: %s %s", path, error.code, error.message)


async def open_session(
    request: web.Request,
    kind: str,
    ears: SessionEars,
    make_agent: Callable[[AgentContext, SessionEars], A],
    negotiate: Callable[[A, str], Awaitable[str]],
) -> tuple[Resource, web.Response]:
    """The POST: checks, join, negotiate; the new session and its 201 response."""
    resources = request.app[RESOURCES]
    resources.throttle()
    room = room_id(request)
    require_content_type(request, "application/sdp")
    offer = await read_offer(request)
    resources.check_capacity()
    agent = make_agent(request.app[SERVICES].context, ears)
    try:
        await agent.join(room, token=bearer_token(request))
        answer = await negotiate(agent, offer)
    except BaseException:
        await agent.close("refused")
        raise
    resource = Resource(kind, room, agent, offer, node=resources.node)
    ears.resource = resource
    resources.add(resource)
    agent.log.info("%s session %s", kind.upper(), resource.path)
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": resource.path, "ETag": resource.etag},
    )
    for link in link_ice_servers(request):
        response.headers.add("Link", link)
    return resource, response


def endpoint_routes(
    kind: str, post: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> list[web.RouteDef]:
    """POST (the protocol's own), OPTIONS and GET on /{kind}/{room}."""
    path = f"/{kind}/{{room}}"

    async def options(request: web.Request) -> web.Response:
        response = web.Response(status=200, headers={"Accept-Post": "application/sdp"})
        for link in link_ice_servers(request):  # RFC 9725 §4.6: also on a non-preflight OPTIONS
            response.headers.add("Link", link)
        return response

    async def get(request: web.Request) -> web.Response:
        room_id(request)
        return web.Response(status=204)

    return [web.post(path, post), web.options(path, options), web.get(path, get, allow_head=False)]
