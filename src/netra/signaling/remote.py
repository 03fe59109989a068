"""RemoteSession: a client's session that another node of the cluster holds.

A client whose socket dropped may reconnect to any node (a balancer without stickiness, or
another worker on the same port). Its session, peer connection and media stay on the node that
made them, which its resume key names. The node it reached opens a WebSocket of its own to that
node, sends the client's `join` there and pipes frames both ways until either side closes: the
client gets its session back (`resumed: true`, the same `clientId`) and renegotiates nothing.
The home node takes the client's address from CLIENT_ADDRESS for its per-address limits, but
only from a connection that carries a `relay` token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp

from netra.cluster.owners import CLIENT_ADDRESS, FORWARDED
from netra.signaling import messages as m

logger = logging.getLogger("netra.session")

# Nodes are on one network: longer means a node that vanished (its key lives 5 s more).
CONNECT_SECONDS = 1.0
CLOSE_SECONDS = 2.0
# Codes that say a socket ended without a close frame; they are never sent on the wire.
_NO_CLOSE_FRAME = frozenset({1005, 1006, 1015})
# The home node vanished: 1012 (service restart) tells the client to reconnect.
HOME_GONE = 1012

Deliver = Callable[[str], None]
Ended = Callable[[int, str], None]


class RemoteSession:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        deliver: Deliver,
        ended: Ended,
    ) -> None:
        self._http = http
        self._ws = ws
        self._deliver = deliver
        self._ended = ended
        self._closing = False
        self._reader = asyncio.create_task(self._read(), name="remote-session")

    @classmethod
    async def open(
        cls,
        url: str,
        join: m.Join,
        *,
        here: str,
        address: str,
        token: str,
        heartbeat: float,
        deliver: Deliver,
        ended: Ended,
    ) -> RemoteSession | None:
        """The session at `url` with `join` sent to it; None when that node cannot be reached
        (then the join is served here)."""
        http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS)
        )
        headers = {
            FORWARDED: here,
            CLIENT_ADDRESS: address,
            "Authorization": f"Bearer {token}",
        }
        try:
            ws = await http.ws_connect(
                url + "/ws",
                headers=headers,
                heartbeat=heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_SECONDS),
            )
            await ws.send_str(join.model_dump_json(exclude_none=True))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await http.close()
            logger.info("the session's node at %s cannot be reached (%r)", url, exc)
            return None
        return cls(http, ws, deliver, ended)

    async def send(self, frame: str | bytes) -> None:
        # A frame sent as the home node closes is lost as it would be on a direct socket.
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(frame, str):
                await self._ws.send_str(frame)
            else:
                await self._ws.send_bytes(frame)

    async def _read(self) -> None:
        reason = "its node closed the connection"
        try:
            while True:
                frame = await self._ws.receive()
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self._deliver(frame.data)
                elif frame.type is aiohttp.WSMsgType.CLOSE:
                    reason = frame.extra or reason
                    break
                elif frame.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    reason = "its node is gone"
                    break
        finally:
            code = self._ws.close_code
            if not self._closing:
                if code is None or code in _NO_CLOSE_FRAME:
                    code = HOME_GONE
                self._ended(code, reason)

    async def close(self) -> None:
        """The client's socket closed: so does this one, and the home node parks the
        session for the grace period as for any socket that drops."""
        self._closing = True
        await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._http.close()
