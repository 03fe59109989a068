"""What a WHIP or WHEP POST carries, checked before any agent exists."""

from __future__ import annotations

import re

from aiohttp import web

from netra.errors import ProtocolError
from netra.rooms.room import ROOM_ID_PATTERN

MAX_SDP_BYTES = 60_000
_ROOM = re.compile(ROOM_ID_PATTERN)


def room_id(request: web.Request) -> str:
    room = request.match_info["room"]
    if not _ROOM.fullmatch(room):
        raise ProtocolError(
            "a room name is 1-64 letters, digits, '-' or '_'", code="invalid-message"
        )
    return room


async def read_offer(request: web.Request) -> str:
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise ProtocolError(f"an offer is at most {MAX_SDP_BYTES} bytes", code="too-large")
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        raise ProtocolError(f"an offer is at most {MAX_SDP_BYTES} bytes", code="too-large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the offer is not UTF-8 text", code="invalid-sdp") from None
    if not text.lstrip().startswith("v=0"):
        raise ProtocolError(
            "the body is not an SDP offer (it must start with v=0)", code="invalid-sdp"
        )
    return text
