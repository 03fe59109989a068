"""What the request handlers share: built once by app.create_app."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiortc import RTCIceServer

from netra.config import Config
from netra.observability.loop_lag import LoopLag
from netra.rooms.registry import RoomRegistry


@dataclass
class Services:
    config: Config
    rooms: RoomRegistry
    ice_servers: list[RTCIceServer]
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    loop_lag: LoopLag = field(default_factory=LoopLag)


SERVICES = web.AppKey("netra", Services)
