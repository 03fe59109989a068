"""What the request handlers share: built once by app.create_app."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from netra.agents.agent import AgentContext
from netra.config import Config
from netra.observability.loop_lag import LoopLag


@dataclass
class Services:
    context: AgentContext
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    loop_lag: LoopLag = field(default_factory=LoopLag)

    @property
    def config(self) -> Config:
        return self.context.config


SERVICES = web.AppKey("netra", Services)
