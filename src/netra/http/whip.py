"""WHIP ingest at /whip/{room} (RFC 9725): a PublisherAgent behind an HTTP resource.

POST an `application/sdp` offer with `Authorization: Bearer <token with publish>`: exactly
201 with the answer (every server candidate in it; the server does not trickle), Location,
ETag and one Link per ICE server. The session's PATCH, DELETE and GET are in resource.py.
"""

from __future__ import annotations

import logging

from aiohttp import web

from netra.agents.publisher import PublisherAgent
from netra.errors import NetraError
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

logger = logging.getLogger("netra.whip")


class _Ears:
    """The WHIP session's AgentListener: a publisher over HTTP hears nothing but its end."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self.resource: Resource | None = None

    def stream_ended(self, reason: str) -> None:
        if reason == "streamer-failed" and self.resource is not None:
            # The peer connection failed: the encoder must POST again (OBS does).
            self._resources.close_soon(self.resource, reason)

    def joined(self, room: Room, participant: Participant) -> None:
        pass

    def offer(self, sdp: str) -> None:
        pass

    def stream_started(self) -> None:
        pass

    def viewers_changed(self, count: int) -> None:
        pass

    def peer_lost(self) -> None:
        pass

    def replaced(self) -> None:
        pass

    def failed(self, error: NetraError) -> None:
        logger.info("whip session: %s %s", error.code, error.message)


async def post(request: web.Request) -> web.Response:
    services, resources = request.app[SERVICES], request.app[RESOURCES]
    resources.throttle()
    room = room_id(request)
    require_content_type(request, "application/sdp")
    offer = await read_offer(request)
    resources.check_capacity()
    ears = _Ears(resources)
    agent = PublisherAgent(services.context, ears, via="whip")
    try:
        await agent.join(room, token=bearer_token(request))
        answer = await agent.publish(offer)
    except BaseException:
        await agent.close("refused")
        raise
    resource = Resource("whip", room, agent, offer)
    ears.resource = resource
    resources.add(resource)
    agent.log.info("WHIP session %s", resource.path)
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": resource.path, "ETag": resource.etag},
    )
    for link in link_ice_servers(request):
        response.headers.add("Link", link)
    return response


async def options(request: web.Request) -> web.Response:
    response = web.Response(status=200, headers={"Accept-Post": "application/sdp"})
    for link in link_ice_servers(request):
        response.headers.add("Link", link)
    return response


async def get(request: web.Request) -> web.Response:
    room_id(request)
    return web.Response(status=204)


routes = [
    web.post("/whip/{room}", post),
    web.options("/whip/{room}", options),
    web.get("/whip/{room}", get, allow_head=False),
    *session_routes("whip", on_delete="streamer-left"),
]
