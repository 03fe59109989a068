"""The composition root: Config in, aiohttp Application out."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Handler
from aiortc import RTCIceServer

from netra.agents.agent import AgentContext
from netra.auth import Authority, Grant, secret_for
from netra.config import Config
from netra.errors import forbidden
from netra.http import whep, whip
from netra.http.cors import add_cors_headers
from netra.http.limits import RateLimit
from netra.http.problem import problems
from netra.http.resource import RESOURCES, Resources, bearer_token
from netra.media import aiortc_private, dtls
from netra.memory import configure_gc
from netra.observability.access_log import AccessLogger
from netra.rooms.registry import RoomRegistry
from netra.services import SERVICES, Services
from netra.signaling.endpoint import websocket

logger = logging.getLogger("netra")

STATIC = Path(__file__).parent / "static"


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return handler


def create_app(config: Config, secret: str | None = None) -> web.Application:
    """`secret` signs and checks tokens; by default the configured one, else the one kept in
    the state directory (netra.auth.secret_for)."""
    aiortc_private.check()
    # Real encoders: H.264 as OBS and FFmpeg send it, offers with no candidates, binding
    # requests without PRIORITY, and FFmpeg's P-224 DTLS certificate.
    aiortc_private.accept_h264_profiles()
    aiortc_private.tolerate_clients_without_candidates()
    aiortc_private.no_consent_checks_after_close()
    dtls.accept_ffmpeg_certificates()
    if config.candidate_addresses:
        aiortc_private.offer_host_addresses(config.candidate_addresses)
    context = AgentContext(
        config=config,
        rooms=RoomRegistry(),
        ice_servers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in config.ice_servers
        ],
        authority=Authority(secret or secret_for(config)),
    )
    app = web.Application(middlewares=[problems])
    app.on_response_prepare.append(add_cors_headers)
    app[SERVICES] = Services(context=context)
    app[RESOURCES] = Resources(
        max_sessions=config.max_sessions,
        rate_limit=RateLimit(config.http_rate, config.http_burst),
    )
    app.add_routes(
        [
            web.get("/", _page("home.html")),
            web.get("/stream/{room}", _page("streamer.html")),
            web.get("/watch/{room}", _page("viewer.html")),
            web.get("/ws", websocket),
            web.get("/api/rooms", _rooms),
            web.static("/static", STATIC),
            *whip.routes,
            *whep.routes,
        ]
    )
    app.on_startup.append(_start_monitors)
    app.on_shutdown.append(_close_sessions)
    app.on_cleanup.append(_stop_monitors)
    return app


async def _start_monitors(app: web.Application) -> None:
    app[SERVICES].loop_lag.start()


async def _stop_monitors(app: web.Application) -> None:
    await app[SERVICES].loop_lag.stop()


async def _rooms(request: web.Request) -> web.Response:
    """What is live where: every room's snapshot, for operators and the tests. Needs a token
    with the `admin` grant."""
    services = request.app[SERVICES]
    claims = services.context.authority.verify(bearer_token(request))
    if Grant.ADMIN not in claims.grants:
        raise forbidden("the rooms API needs a token with the admin grant (netra token --admin)")
    return web.json_response(
        {"rooms": services.context.rooms.snapshot(), "loop_lag": services.loop_lag.snapshot()}
    )


async def _close_sessions(app: web.Application) -> None:
    """Close every signaling socket and WHIP/WHEP session, so that each leaves its room and
    closes its peer connections before the loop stops."""
    services = app[SERVICES]
    sockets = list(services.sockets)
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
        app[RESOURCES].close_all(),
        return_exceptions=True,
    )


def run(config: Config, secret: str | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    else:
        uvloop.install()  # fan-out.md: +20-50 % viewers per core for packet forwarding
    app = create_app(config, secret)
    configure_gc()
    web.run_app(app, host=config.host, port=config.port, print=None, access_log_class=AccessLogger)
