"""WHIP ingest at /whip/{room} (RFC 9725): a PublisherAgent behind an HTTP resource.

POST an `application/sdp` offer with `Authorization: Bearer <token with publish>`: exactly
201 with the answer (every server candidate in it; the server does not trickle), Location,
ETag and one Link per ICE server (endpoint.py). The session's PATCH, DELETE and GET are in
resource.py.
"""

from __future__ import annotations

from aiohttp import web

from netra.agents.publisher import PublisherAgent
from netra.http.endpoint import SessionEars, endpoint_routes, open_session
from netra.http.resource import RESOURCES, session_routes


class _Ears(SessionEars):
    """A publisher over HTTP hears nothing but its own end. Its session is its one peer
    connection: when that fails, or its stream ends, the encoder POSTs again."""

    def stream_ended(self, reason: str) -> None:
        # Not its own DELETE; `origin-moved`: another node has the room (the encoder's POST
        # is refused while that node's streamer publishes).
        if reason in ("streamer-failed", "streamer-vanished", "origin-moved"):
            self.end_session(reason)

    def peer_lost(self) -> None:
        self.end_session("streamer-failed")


async def post(request: web.Request) -> web.Response:
    _, response = await open_session(
        request,
        "whip",
        _Ears(request.app[RESOURCES]),
        lambda context, ears: PublisherAgent(context, ears, via="whip"),
        PublisherAgent.publish,
    )
    return response


routes = [
    *endpoint_routes("whip", post),
    *session_routes("whip", on_delete="streamer-left"),
]
