"""What the request handlers share: built once by app.create_app."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from netra.agents.agent import AgentContext
from netra.config import Config
from netra.limits import AddressLimits
from netra.observability.loop_lag import LoopLag
from netra.signaling.sessions import Sessions


@dataclass
class Services:
    context: AgentContext
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    loop_lag: LoopLag = field(default_factory=LoopLag)
    sessions: Sessions = field(init=False)
    addresses: AddressLimits = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.context)
        self.addresses = AddressLimits(
            max_connections=self.config.max_connections_per_address,
            joins_per_minute=self.config.join_rate,
        )

    @property
    def config(self) -> Config:
        return self.context.config


SERVICES = web.AppKey("netra", Services)
