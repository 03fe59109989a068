"""The `/ws` endpoint: an aiohttp WebSocket feeding one SignalingSession."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from netra.services import SERVICES
from netra.signaling.messages import MAX_MESSAGE_BYTES
from netra.signaling.session import SignalingSession

# aiohttp closes the socket above this; below it, oversized frames get a `too-large` error.
_HARD_FRAME_LIMIT = 16 * MAX_MESSAGE_BYTES
# A dead client is noticed within about this many seconds (aiohttp pings, then waits half).
HEARTBEAT_SECONDS = 10.0
CLOSE_SECONDS = 2.0


async def websocket(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=_HARD_FRAME_LIMIT)
    await ws.prepare(request)

    async def close(code: int, reason: str) -> None:
        # A client that stopped reading would hold close() forever on a full TCP window.
        try:
            await asyncio.wait_for(ws.close(code=code, message=reason.encode()), CLOSE_SECONDS)
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()

    session = SignalingSession(context=services.context, send=ws.send_str, close=close)
    services.sockets.add(ws)
    session.log.info("connected from %s", request.remote)
    loop = asyncio.create_task(session.run())
    try:
        async for frame in ws:
            if frame.type is WSMsgType.TEXT:
                session.receive(frame.data)
            elif frame.type is WSMsgType.BINARY:
                session.receive(frame.data)
            elif frame.type is WSMsgType.ERROR:
                break
    finally:
        session.socket_closed()
        await loop
        services.sockets.discard(ws)
    return ws
