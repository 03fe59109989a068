"""The `/ws` endpoint: an aiohttp WebSocket feeding one Connection."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from netra.auth import Grant
from netra.cluster.owners import CLIENT_ADDRESS, FORWARDED
from netra.errors import WS_CLOSE_CODE, NetraError
from netra.http.resource import bearer_token
from netra.services import SERVICES
from netra.signaling.connection import Connection
from netra.signaling.messages import MAX_MESSAGE_BYTES

# aiohttp closes the socket above this; below it, oversized frames get a `too-large` error.
_HARD_FRAME_LIMIT = 16 * MAX_MESSAGE_BYTES
CLOSE_SECONDS = 2.0


async def websocket(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    config = services.config
    # aiohttp pings after `heartbeat` seconds without a frame and drops a client that has not
    # answered within half of that: a half-open client is parked within 1.5 × heartbeat.
    ws = web.WebSocketResponse(heartbeat=config.heartbeat, max_msg_size=_HARD_FRAME_LIMIT)
    await ws.prepare(request)
    forwarded = _from_another_node(request)
    address = (forwarded or request.remote) or "-"
    try:
        services.addresses.connect(address)
    except NetraError as exc:
        await ws.send_str(json.dumps(exc.to_wire()))
        await ws.close(code=WS_CLOSE_CODE[exc.code], message=exc.code.encode())
        services.context.events[f"error:{exc.code}"] += 1
        return ws

    async def close(code: int, reason: str) -> None:
        # A client that stopped reading would hold close() forever on a full TCP window.
        try:
            await asyncio.wait_for(ws.close(code=code, message=reason.encode()), CLOSE_SECONDS)
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()

    connection = Connection(
        sessions=services.sessions,
        send=ws.send_str,
        close=close,
        address=address,
        limits=services.addresses,
        message_rate=config.message_rate,
        forwarded=forwarded is not None,
    )
    services.sockets.add(ws)
    connection.log.info("connected from %s", address)
    loop = asyncio.create_task(connection.run())
    try:
        async for frame in ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                connection.receive(frame.data)
            elif frame.type is WSMsgType.ERROR:
                break
    finally:
        if isinstance(ws.exception(), asyncio.TimeoutError):
            connection.log.info("no pong within %.1f s: the client is gone", config.heartbeat / 2)
        connection.socket_closed()
        await loop
        services.sockets.discard(ws)
        services.addresses.disconnect(address)
    return ws


def _from_another_node(request: web.Request) -> str | None:
    """The client's address, when this socket is another node's pipe for a client whose
    session is here (netra.signaling.remote): only a `relay` token makes the header count."""
    if FORWARDED not in request.headers or CLIENT_ADDRESS not in request.headers:
        return None
    try:
        claims = request.app[SERVICES].context.authority.verify(bearer_token(request))
    except NetraError:
        return None
    return request.headers[CLIENT_ADDRESS] if Grant.RELAY in claims.grants else None
