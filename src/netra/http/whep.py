"""WHEP playback at /whep/{room}: a ViewerAgent that answers the player's offer.

POST a recvonly `application/sdp` offer: 201 with the answer, Location and ETag, or 409 with
Retry-After while the room is not live. Viewing is open unless the server says
`--viewers-need-token`. The session advertises the WHEP server-sent events extension with
`active`, `inactive` and `viewercount`. When the stream ends the player hears `inactive` and
the session ends: the player POSTs again (409 until the room is live again).
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from netra.agents.viewer import ViewerAgent
from netra.errors import NetraError, ProtocolError
from netra.http.offer import read_offer, room_id
from netra.http.resource import (
    RESOURCES,
    Resource,
    Resources,
    bearer_token,
    link_ice_servers,
    require_content_type,
    session_routes,
)
from netra.rooms.participant import Participant
from netra.rooms.room import Room
from netra.services import SERVICES

logger = logging.getLogger("netra.whep")

SSE_REL = "urn:ietf:params:whep:ext:core:server-sent-events"
EVENTS = ("active", "inactive", "viewercount")
SSE_KEEPALIVE_SECONDS = 15.0


class _Ears:
    """The WHEP session's AgentListener: room news becomes server-sent events."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self.resource: Resource | None = None

    def stream_started(self) -> None:
        if self.resource is not None:
            self.resource.emit("active", {})

    def stream_ended(self, reason: str) -> None:
        if self.resource is not None:
            self.resource.emit("inactive", {"reason": reason})
            self._resources.close_soon(self.resource, "stream-ended")

    def viewers_changed(self, count: int) -> None:
        if self.resource is not None:
            self.resource.emit("viewercount", {"viewercount": count})

    def peer_lost(self) -> None:
        if self.resource is not None:
            self._resources.close_soon(self.resource, "viewer-failed")

    def joined(self, room: Room, participant: Participant) -> None:
        pass

    def offer(self, sdp: str) -> None:
        pass

    def replaced(self) -> None:
        pass

    def failed(self, error: NetraError) -> None:
        logger.info("whep session: %s %s", error.code, error.message)


async def post(request: web.Request) -> web.Response:
    services, resources = request.app[SERVICES], request.app[RESOURCES]
    resources.throttle()
    room = room_id(request)
    require_content_type(request, "application/sdp")
    offer = await read_offer(request)
    resources.check_capacity()
    ears = _Ears(resources)
    agent = ViewerAgent(services.context, ears, via="whep", server_offers=False)
    try:
        await agent.join(room, token=bearer_token(request))
        answer = await agent.answer(offer)
    except BaseException:
        await agent.close("refused")
        raise
    resource = Resource("whep", room, agent, offer)
    ears.resource = resource
    resources.add(resource)
    agent.log.info("WHEP session %s", resource.path)
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": resource.path, "ETag": resource.etag},
    )
    for link in link_ice_servers(request):
        response.headers.add("Link", link)
    response.headers.add(
        "Link", f'<{resource.path}/events>; rel="{SSE_REL}"; events="{",".join(EVENTS)}"'
    )
    return response


async def options(request: web.Request) -> web.Response:
    return web.Response(status=200, headers={"Accept-Post": "application/sdp"})


async def get(request: web.Request) -> web.Response:
    room_id(request)
    return web.Response(status=204)


def _find(request: web.Request) -> Resource:
    return request.app[RESOURCES].find("whep", request.match_info["room"], request.match_info["id"])


async def subscribe_events(request: web.Request) -> web.Response:
    """The player names the events it wants (a JSON array); 201 with where to read them."""
    resource = _find(request)
    try:
        wanted = json.loads(await request.text() or "[]")
    except ValueError:
        raise ProtocolError("send a JSON array of event names", code="bad-json") from None
    if not isinstance(wanted, list) or not all(isinstance(e, str) for e in wanted):
        raise ProtocolError("send a JSON array of event names", code="invalid-message")
    unknown = sorted(set(wanted) - set(EVENTS))
    if unknown:
        raise ProtocolError(
            f"unknown events {unknown}: this server sends {list(EVENTS)}", code="invalid-message"
        )
    return web.Response(status=201, headers={"Location": f"{resource.path}/events"})


async def events(request: web.Request) -> web.StreamResponse:
    resource = _find(request)
    agent = resource.agent
    queue = resource.subscribe()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        room = agent.room
        if room is not None:
            await _send(response, "active" if room.live else "inactive", {})
            await _send(response, "viewercount", {"viewercount": len(room.viewers)})
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            await _send(response, *item)
    except (ConnectionError, RuntimeError):
        pass  # the player went away
    finally:
        resource.unsubscribe(queue)
    return response


async def _send(response: web.StreamResponse, event: str, data: dict[str, object]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


routes = [
    web.post("/whep/{room}", post),
    web.options("/whep/{room}", options),
    web.get("/whep/{room}", get, allow_head=False),
    *session_routes("whep", on_delete="viewer-left"),
    web.post("/whep/{room}/{id}/events", subscribe_events),
    web.get("/whep/{room}/{id}/events", events, allow_head=False),
    web.options("/whep/{room}/{id}/events", options),
]
