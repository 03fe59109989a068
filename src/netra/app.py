"""The composition root: Config in, aiohttp Application out; and `run`, which serves it until
SIGTERM or SIGINT and then shuts down within SHUTDOWN_SECONDS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Sequence
from pathlib import Path

from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Handler
from aiortc import RTCIceServer
from prometheus_client.aiohttp import make_aiohttp_handler

from netra import memory
from netra.agents.agent import AgentContext
from netra.auth import Authority, Grant, secret_for
from netra.cluster.directory import Directory, LocalDirectory, Node
from netra.config import Config, ConfigError
from netra.errors import forbidden
from netra.http import whep, whip
from netra.http.cors import add_cors_headers
from netra.http.problem import problems
from netra.http.resource import RESOURCES, Resources, bearer_token
from netra.limits import RateLimit
from netra.media import aiortc_private, dtls, fanout
from netra.observability.access_log import AccessLogger
from netra.observability.metrics import create_registry
from netra.rooms.registry import RoomRegistry
from netra.services import SERVICES, Services
from netra.signaling import messages
from netra.signaling.endpoint import websocket

logger = logging.getLogger("netra")

STATIC = Path(__file__).parent / "static"

# `server-shutdown` tells clients to reconnect after this many seconds (to the next server).
RETRY_AFTER_SECONDS = 1
# Shutdown must be over within SHUTDOWN_SECONDS (docs/protocol.md); each step is bounded so
# that the worst case, 1 + 1 + 2 × 0.75 s, leaves room for the process to exit.
SHUTDOWN_SECONDS = 5.0
GOODBYE_SECONDS = 1.0  # server-shutdown and a 1001 close to every socket; WHIP/WHEP closed
SESSIONS_SECONDS = 1.0  # every signaling session (parked ones too) and its peer connection
HANDLER_SECONDS = 0.75  # aiohttp waits this for request handlers, and again once cancelled

# Participants hear the viewer count at most once per this (docs/protocol.md, `viewers`).
VIEWERS_INTERVAL_SECONDS = 1.0

# Set when shutdown begins: /readyz answers 503 from then on.
SHUTTING_DOWN = web.AppKey("netra.shutting_down", asyncio.Event)


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
    aiortc_private.receive_media_directly()
    dtls.accept_ffmpeg_certificates()
    if config.candidate_addresses:
        aiortc_private.offer_host_addresses(config.candidate_addresses)
    if config.udp_ports:
        aiortc_private.bind_udp_ports(*config.udp_ports)
    try:
        path = fanout.select(config.fanout)
    except RuntimeError as error:
        raise ConfigError(f"--fanout native: {error}") from None
    logger.info("fan-out: %s", path)
    context = AgentContext(
        config=config,
        rooms=RoomRegistry(
            max_rooms=config.max_rooms,
            max_viewers_per_room=config.max_viewers_per_room,
            viewers_interval=VIEWERS_INTERVAL_SECONDS,
        ),
        ice_servers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in config.ice_servers
        ],
        authority=Authority(secret or secret_for(config)),
        directory=_directory(config),
    )
    if config.redis:
        from netra.cluster.relays import Relays

        context.relays = Relays(context, linger=config.relay_linger)
    app = web.Application(middlewares=[problems])
    app.on_response_prepare.append(add_cors_headers)
    services = app[SERVICES] = Services(context=context)
    resources = app[RESOURCES] = Resources(
        max_sessions=config.max_sessions,
        rate_limit=RateLimit(config.http_rate, config.http_burst),
        node=context.cluster_node,
    )
    app[SHUTTING_DOWN] = asyncio.Event()
    app.add_routes(
        [
            web.get("/", _page("home.html")),
            web.get("/stream/{room}", _page("streamer.html")),
            web.get("/watch/{room}", _page("viewer.html")),
            web.get("/ws", websocket),
            web.get("/api/rooms", _rooms),
            # Open, as Prometheus and probes expect: no token, no query string (README).
            web.get("/metrics", make_aiohttp_handler(create_registry(services, resources))),
            web.get("/healthz", _healthz),
            web.get("/readyz", _readyz),
            web.static("/static", STATIC),
            *whip.routes,
            *whep.routes,
        ]
    )
    app.on_startup.append(_start_monitors)
    app.on_shutdown.append(_shut_down)
    app.on_cleanup.append(_stop_monitors)
    return app


def _directory(config: Config) -> Directory:
    """In memory for one process; in Redis for a cluster (only then is redis imported)."""
    node = Node(config.node_id or f"{socket.gethostname()}-{os.getpid()}", config.node_url)
    if not config.redis:
        return LocalDirectory(node)
    from netra.cluster.redis_directory import RedisDirectory

    return RedisDirectory(node, config.redis)


async def _start_monitors(app: web.Application) -> None:
    services = app[SERVICES]
    services.loop_lag.start()
    memory.FULL_COLLECTIONS.start()  # full collections from a timer, not mid-forwarding
    context = services.context
    await context.directory.start(_NodeEars(context))
    if context.relays is not None:
        context.relays.start()
        logger.info("node %s of the cluster at %s", context.directory.node.id, context.config.redis)


class _NodeEars:
    """What the cluster's directory asks of this node and tells it (DirectoryListener)."""

    def __init__(self, context: AgentContext) -> None:
        self._rooms = context.rooms

    def audiences(self) -> dict[str, int]:
        return {room.id: room.audience for room in self._rooms}

    def remote_audiences(self, counts: dict[str, int]) -> None:
        for room_id, count in counts.items():
            if (room := self._rooms.get(room_id)) is not None:
                room.set_remote_audience(count)

    def lost(self, room_id: str) -> None:
        """Another node holds this room's origin claim now (it was lost in a Redis outage, or
        taken by a node this one did not answer): one origin per room again, so the stream
        here ends; its streamer may publish again."""
        room = self._rooms.get(room_id)
        if room is not None and room.streamer is not None and room.streamer.via != "relay":
            room.end_stream(room.streamer, "origin-moved")


async def _stop_monitors(app: web.Application) -> None:
    memory.FULL_COLLECTIONS.stop()
    await app[SERVICES].loop_lag.stop()
    await app[SERVICES].context.directory.close()


async def _rooms(request: web.Request) -> web.Response:
    """What is live where: every room's snapshot, for operators and the tests. Needs a token
    with the `admin` grant."""
    services = request.app[SERVICES]
    claims = services.context.authority.verify(bearer_token(request))
    if Grant.ADMIN not in claims.grants:
        raise forbidden("the rooms API needs a token with the admin grant (netra token --admin)")
    return web.json_response(
        {
            "rooms": services.context.rooms.snapshot(),
            "cluster": _cluster_snapshot(services.context),
            "loop_lag": services.loop_lag.snapshot(),
            "gc": memory.snapshot(),
        }
    )


def _cluster_snapshot(context: AgentContext) -> dict[str, object]:
    snapshot = {**context.directory.snapshot(), "pid": os.getpid()}
    if context.relays is not None:
        snapshot["pulls"] = context.relays.snapshot()
    return snapshot


async def _healthz(request: web.Request) -> web.Response:
    """The process serves HTTP."""
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    """The server takes new clients: not once shutdown has begun."""
    if request.app[SHUTTING_DOWN].is_set():
        return web.Response(status=503, text="shutting down\n")
    return web.Response(text="ok\n")


async def _shut_down(app: web.Application) -> None:
    """Runs once the listening sockets are closed: tell every WebSocket client to come back
    later and close its socket with 1001, close every WHIP/WHEP session, then every signaling
    session (a dropped socket parks its session) and with it its peer connection."""
    app[SHUTTING_DOWN].set()
    services = app[SERVICES]
    if services.context.relays is not None:
        await _bounded("ending pulls", SESSIONS_SECONDS, services.context.relays.close())
    goodbye = json.dumps(messages.server_shutdown(RETRY_AFTER_SECONDS))
    await _bounded(
        "telling clients",
        GOODBYE_SECONDS,
        *(_say_goodbye(ws, goodbye) for ws in list(services.sockets)),
        app[RESOURCES].close_all(),
    )
    await _bounded(
        "closing sessions", SESSIONS_SECONDS, services.sessions.close_all("server-shutdown")
    )


async def _say_goodbye(ws: web.WebSocketResponse, text: str) -> None:
    try:
        await ws.send_str(text)
    finally:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server-shutdown")


async def _bounded(what: str, seconds: float, *steps: Awaitable[object]) -> None:
    """Run `steps` together for at most `seconds`: shutdown goes on whatever they do."""
    try:
        results = await asyncio.wait_for(asyncio.gather(*steps, return_exceptions=True), seconds)
    except TimeoutError:
        logger.warning("shutdown: %s took over %.1f s; going on", what, seconds)
        return
    for result in results:
        # A client that went away meanwhile is no news; anything else is worth a line.
        if isinstance(result, Exception) and not isinstance(result, ConnectionError):
            logger.warning("shutdown: %s: %r", what, result)


def run(
    config: Config,
    secret: str | None = None,
    *,
    reuse_port: bool = False,
    sockets: Sequence[socket.socket] = (),
) -> None:
    """Serve on config's host and port (shared with other processes if `reuse_port`) and on
    `sockets` too (a worker's own relay port)."""
    app = create_app(config, secret)
    memory.configure_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        asyncio.run(_serve(app, config, reuse_port, sockets))
    else:
        uvloop.run(_serve(app, config, reuse_port, sockets))  # fan-out.md: +20-50 % viewers/core


async def _serve(
    app: web.Application, config: Config, reuse_port: bool, sockets: Sequence[socket.socket]
) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting connections and shut down.

    aiohttp's run_app would raise GracefulExit out of the loop and clean up inside a
    cancelled task, where a handler slow to finish aborts the rest of the cleanup; here the
    signal only ends the wait, and the cleanup runs to its end. A second signal is ignored:
    shutdown is bounded anyway."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[signal.Signals] = loop.create_future()

    def stop_on(signum: signal.Signals) -> None:
        if not stop.done():
            stop.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_on, signum)
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        keepalive_timeout=75.0,  # web.run_app's, rather than the handler's own hour
        shutdown_timeout=HANDLER_SECONDS,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port).start()
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        logger.info("shutting down on %s", (await stop).name)
    finally:
        await runner.cleanup()
