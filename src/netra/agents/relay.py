"""RelayAgent: a room's stream pulled from its origin node, as this node's streamer of it.

To the local room the relay is the streamer (`via` "relay"): the stream it starts is fanned out
to this node's viewers by the same Publications and Subscriptions as a browser's. To the origin
it is a WHEP player whose token has the `relay` grant, so it is not counted as a viewer. The
origin forwards the publisher's sender reports and answers its NACKs and keyframe requests (its
limiter still holds the publisher to two a second); the pull's own receiver NACKs what the link
loses, audio as well as video. The stream's watch (PublisherAgent's) notices media that stops.
"""

from __future__ import annotations

import json

import aiohttp
from yarl import URL

from netra.agents.agent import AgentContext, AgentListener
from netra.agents.publisher import PublisherAgent
from netra.auth import Claims
from netra.cluster.directory import Origin
from netra.errors import UserError
from netra.media.peer import Peer

PULL_TIMEOUT_SECONDS = 5.0
# Ending the origin's session is a courtesy: it also ends when the peer connection closes.
DELETE_TIMEOUT_SECONDS = 1.0


class RelayAgent(PublisherAgent):
    def __init__(
        self,
        context: AgentContext,
        listener: AgentListener,
        *,
        origin: Origin,
        http: aiohttp.ClientSession,
    ) -> None:
        super().__init__(context, listener, via="relay")
        self.origin = origin
        self._http = http
        self._session_url: str | None = None

    def admit(self, room_id: str, token: str | None) -> Claims | None:
        return None  # the node's own: the origin checks the relay token

    async def _claim(self, room_id: str) -> None:
        pass  # the origin node holds the room's claim

    async def pull(self) -> None:
        """Offer to receive the room's stream from the origin; raises what the origin said."""
        await self._call(self._pull)

    async def _pull(self) -> None:
        room = self.room
        if room is None:
            raise UserError("the relay left its room", code="not-found")
        peer = self._new_peer()
        offer = await peer.pull_offer()
        url = f"{self.origin.node.relay_url}/whep/{room.id}"
        headers = {
            "Content-Type": "application/sdp",
            "Authorization": f"Bearer {self.context.authority.mint_relay(room.id)}",
        }
        timeout = aiohttp.ClientTimeout(total=PULL_TIMEOUT_SECONDS)
        try:
            async with self._http.post(url, data=offer, headers=headers, timeout=timeout) as reply:
                body = await reply.text()
                if reply.status != 201:
                    raise _refused(reply.status, body, reply.content_type)
                self._session_url = str(reply.url.join(URL(reply.headers["Location"])))
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._close_peer()
            raise UserError(
                f"the origin at {self.origin.node.relay_url} cannot be reached ({exc!r})",
                code="origin-unreachable",
            ) from None
        except BaseException:
            await self._close_peer()
            raise
        await peer.accept_pull_answer(body)
        self.log.info("pulling from node %s (%s)", self.origin.node.id, self._session_url)

    async def _on_peer_state(self, peer: Peer, state: str) -> None:
        room, participant = self.room, self.participant
        assert room is not None and participant is not None
        if state == "connected":
            room.start_stream(participant, peer.publications)
            self._start_watch()
        elif state in ("failed", "closed"):
            self.log.info("the pull from node %s %s", self.origin.node.id, state)
            await self._close_peer()
            room.end_stream(participant, "origin-lost")  # its news reaches the listener too
            if not room.live:
                self._listener.stream_ended("origin-lost")

    async def _leave(self, reason: str) -> None:
        url, self._session_url = self._session_url, None
        await super()._leave(reason)
        if url is not None:
            try:
                timeout = aiohttp.ClientTimeout(total=DELETE_TIMEOUT_SECONDS)
                async with self._http.delete(url, timeout=timeout):
                    pass
            except (aiohttp.ClientError, TimeoutError):
                pass  # the origin is gone


def _refused(status: int, body: str, content_type: str) -> UserError:
    """What the origin's WHEP endpoint answered, as the error it names."""
    code, detail = "origin-refused", body[:200]
    if content_type == "application/problem+json":
        try:
            problem = json.loads(body)
            code = str(problem.get("title") or code)
            detail = str(problem.get("detail") or detail)
        except ValueError:
            pass
    return UserError(f"the origin answered {status}: {detail}", code=code)
