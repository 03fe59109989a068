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

from aiohttp import web

from netra.agents.viewer import ViewerAgent
from netra.errors import ProtocolError
from netra.http.endpoint import SessionEars, endpoint_routes, open_session
from netra.http.forward import forwarded
from netra.http.resource import RESOURCES, find_session, session_routes

SSE_REL = "urn:ietf:params:whep:ext:core:server-sent-events"
EVENTS = ("active", "inactive", "viewercount")
SSE_KEEPALIVE_SECONDS = 15.0


class _Ears(SessionEars):
    """Room news becomes server-sent events."""

    def stream_started(self) -> None:
        if self.resource is not None:
            self.resource.emit("active", {})

    def stream_ended(self, reason: str) -> None:
        if self.resource is not None:
            self.resource.emit("inactive", {"reason": reason})
        self.end_session("stream-ended")

    def viewers_changed(self, count: int) -> None:
        if self.resource is not None:
            self.resource.emit("viewercount", {"viewercount": count})

    def peer_lost(self) -> None:
        self.end_session("viewer-failed")


async def post(request: web.Request) -> web.Response:
    resource, response = await open_session(
        request,
        "whep",
        _Ears(request.app[RESOURCES]),
        lambda context, ears: ViewerAgent(context, ears, via="whep", server_offers=False),
        ViewerAgent.answer,
    )
    response.headers.add(
        "Link", f'<{resource.path}/events>; rel="{SSE_REL}"; events="{",".join(EVENTS)}"'
    )
    return response


async def subscribe_events(request: web.Request) -> web.Response:
    """The player names the events it wants (a JSON array); 201 with where to read them."""
    resource = find_session(request, "whep")
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
    resource = find_session(request, "whep")
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
            await _send(response, "viewercount", {"viewercount": room.viewer_count})
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


async def events_options(request: web.Request) -> web.Response:
    return web.Response(status=200)


routes = [
    *endpoint_routes("whep", post),
    *session_routes("whep", on_delete="viewer-left"),
    web.post("/whep/{room}/{id}/events", forwarded(subscribe_events)),
    web.get("/whep/{room}/{id}/events", forwarded(events), allow_head=False),
    web.options("/whep/{room}/{id}/events", events_options),
]
