"""Sessions: this server's WebSocket sessions by resume key, where a client that comes back on
a new connection finds its own (docs/protocol.md, "Reconnecting").

In a cluster a key names the node that holds its session (`{random}~{node}`): a client that
comes back to another node is sent home (netra.signaling.remote)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from time import monotonic

from netra.agents.agent import AgentContext
from netra.cluster.owners import named, owner_node
from netra.errors import NetraError
from netra.signaling import messages as m
from netra.signaling.remote import Deliver, Ended, RemoteSession
from netra.signaling.session import Link, SignalingSession

logger = logging.getLogger("netra.session")

# How long a resume with a key of a session that ended still says why (then: `expired`).
ENDED_MEMORY_SECONDS = 300.0
MAX_ENDED = 10_000


class Sessions:
    def __init__(self, context: AgentContext) -> None:
        self._context = context
        self._by_key: dict[str, SignalingSession] = {}
        self._ended: dict[str, tuple[str, float]] = {}  # key → (why, remembered until)
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def events(self) -> Counter[str]:
        return self._context.events

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def parked(self) -> int:
        return sum(1 for session in self._by_key.values() if session.link is None)

    def new_key(self) -> str:
        """A fresh, single-use resume key."""
        return named(secrets.token_urlsafe(18), self._context.cluster_node)

    async def remote(
        self, message: m.Join, address: str, deliver: Deliver, ended: Ended
    ) -> RemoteSession | None:
        """The session this join's resume key names, piped from the node that holds it, if
        that is another live node of the cluster; None when it is here, gone, or the key
        names none (then the join is served here)."""
        key, context = message.resumeKey, self._context
        if key is None or context.relays is None or key in self._by_key:
            return None
        here, owner = context.directory.node.id, owner_node(key)
        if owner is None or owner == here:
            return None
        try:
            url = await context.directory.node_url(owner)
        except NetraError:  # the directory is unreachable: served here, which says `expired`
            return None
        if url is None:
            return None
        return await RemoteSession.open(
            url,
            message,
            here=here,
            address=address,
            token=context.authority.mint_relay(message.roomId),
            heartbeat=context.config.heartbeat,
            deliver=deliver,
            ended=ended,
        )

    async def join(
        self, link: Link, message: m.Join, admit: Callable[[], None] = lambda: None
    ) -> SignalingSession:
        """Resume the session `message.resumeKey` names, when it may be; else a new one,
        if `admit()` (the per-address join limit) does not raise: a resume is not counted,
        so that every client can come back at once after a network blip."""
        resume_error = None
        if message.resumeKey is not None:
            found = self._by_key.get(message.resumeKey)
            resume_error = self._refusal(found, message)
            if found is not None and resume_error is None:
                del self._by_key[found.key]
                found.resume(link)  # mints its next key
                self._by_key[found.key] = found
                return found
            self._context.events["resumes_refused"] += 1
        admit()
        session = SignalingSession(self, self._context, message.role)
        try:
            await session.join(link, message, resume_error)
        except BaseException:
            await session.close("join refused")
            raise
        self._by_key[session.key] = session
        return session

    def _refusal(self, session: SignalingSession | None, message: m.Join) -> str | None:
        assert message.resumeKey is not None
        if session is None or session.ended:
            why, until = self._ended.get(message.resumeKey, ("expired", 0.0))
            return why if until > monotonic() else "expired"
        if session.room_id != message.roomId or session.agent.role != message.role:
            return "mismatch"
        return None

    def park(self, session: SignalingSession, link: Link) -> None:
        grace = self._context.config.grace_period
        if grace <= 0:
            self.end(session, "expired")
        else:
            session.park(link, grace)

    def end(self, session: SignalingSession, why: str) -> None:
        """End a parked session: its grace period is over (`expired`) or more was queued for
        it than it may hold (`queue-overflow`). As a `leave` from its client would."""
        if session.ended:
            return
        session.ended = True
        self._forget(session, why)
        if why == "queue-overflow":
            self._context.events["resume_queue_overflows"] += 1
            session.log.warning("ended: more than the queue holds was sent while it was away")
        else:
            session.log.info("ended: not resumed within the grace period")
        task = asyncio.ensure_future(session.close("streamer-disconnected"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def leave(self, session: SignalingSession, reason: str) -> None:
        self._forget(session, "expired")
        await session.close(reason)

    def _forget(self, session: SignalingSession, why: str) -> None:
        if self._by_key.get(session.key) is session:
            del self._by_key[session.key]
        now = monotonic()
        while self._ended and (
            len(self._ended) >= MAX_ENDED or next(iter(self._ended.values()))[1] < now
        ):
            del self._ended[next(iter(self._ended))]
        self._ended[session.key] = (why, now + ENDED_MEMORY_SECONDS)

    async def close_all(self, reason: str) -> None:
        """Close every session, parked or attached (server shutdown)."""
        sessions = list(self._by_key.values())
        self._by_key.clear()
        closing = (session.close(reason) for session in sessions)
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)
