"""The `/ws` endpoint: an aiohttp WebSocket feeding one SignalingSession."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from netra.services import SERVICES
from netra.signaling.messages import MAX_MESSAGE_BYTES
from netra.signaling.session import SignalingSession

# aiohttp closes the socket above this; below it, oversized frames get a `too-large` error.
_HARD_FRAME_LIMIT = 16 * MAX_MESSAGE_BYTES


async def websocket(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=_HARD_FRAME_LIMIT)
    await ws.prepare(request)

    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode())

    session = SignalingSession(
        config=services.config,
        registry=services.rooms,
        ice_servers=services.ice_servers,
        send=ws.send_str,
        close=close,
    )
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
