"""WHIP (RFC 9725) and WHEP clients: aiortc peers that signal over plain HTTP with aiohttp.

For the tests, and as examples of the exchange a real encoder or player makes:

- WhipPublisher POSTs an `application/sdp` offer that sends a test pattern and a tone
  (tracks.py) to /whip/{room} and applies the answer in the 201.
- WhepPlayer POSTs an offer to receive audio and video to /whep/{room}; a Reception
  (peers.py) decodes and counts what arrives.
- EventStream reads a WHEP session's server-sent events.
- HttpClients makes these against one server, or against another Netra it starts with other
  settings, and closes them all: each client DELETEs its session, then closes its peer.

How a client's ICE candidates reach the server (`Candidates`):
- "offer": in the offer; aiortc gathers them all before createOffer returns (GStreamer).
- "trickle": stripped from the offer, then PATCHed as `application/trickle-ice-sdpfrag`
  (RFC 8840) with If-Match, then an end-of-candidates PATCH (the browser libraries).
- "none": stripped, with `a=end-of-candidates`, and never sent: the server can only learn
  the client's address from its connectivity checks, as a peer-reflexive candidate (OBS
  30.2+ and FFmpeg do this).

Every request and wait is bounded, and every failure says what the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import aiohttp
from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from multidict import CIMultiDictProxy
from yarl import URL

from netra.app import create_app
from netra.config import Config

from .peers import DEFAULT_TIMEOUT, TEST_SECRET, Changes, Reception, WaitTimeout, stop_reader
from .peers import token as test_token
from .peers import wait_connected as wait_pc_connected
from .tracks import TestPatternTrack, ToneTrack

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
SSE_REL = "urn:ietf:params:whep:ext:core:server-sent-events"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# An event stream stays open as long as the session does; only connecting is bounded.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)
# A publisher's default token: one with `publish` for its room, minted on the spot.
MINT = "<a publish token for the room>"

Candidates = Literal["offer", "trickle", "none"]


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """One `Link` header value (RFC 8288): `<url>; name=value; …`."""

    url: str
    params: dict[str, str]


_LINK = re.compile(r"\s*<([^>]*)>(.*)")
_LINK_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def parse_link(value: str) -> Link:
    match = _LINK.fullmatch(value)
    assert match, f"not a Link header value: {value!r}"
    params = {
        name.lower(): json.loads(raw) if raw.startswith('"') else raw.strip()
        for name, raw in _LINK_PARAM.findall(match.group(2))
    }
    return Link(match.group(1), params)


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read whole."""

    status: int
    headers: CIMultiDictProxy[str]
    text: str

    def links(self, rel: str) -> list[Link]:
        links = [parse_link(value) for value in self.headers.getall("Link", [])]
        return [link for link in links if link.params.get("rel") == rel]

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem+json body of an error response."""
        content_type = self.headers.get("Content-Type", "")
        assert content_type.startswith("application/problem+json"), self.describe()
        problem: dict[str, Any] = json.loads(self.text)
        return problem

    def describe(self) -> str:
        body = self.text.strip().replace("\r\n", " | ")
        body = body if len(body) < 600 else body[:600] + "…"
        return f"HTTP {self.status} ({self.headers.get('Content-Type', 'no type')}): {body!r}"


def assert_problem(reply: Reply, status: int, *words: str) -> dict[str, Any]:
    """`reply` is an RFC 9457 error of this status, readable by a page on another origin,
    whose detail contains each of `words` (what to fix)."""
    assert reply.status == status, f"want {status}, got {reply.describe()}"
    problem = reply.problem()
    assert problem.get("status") == status, problem
    detail = str(problem.get("detail", ""))
    missing = [word for word in words if word.lower() not in detail.lower()]
    assert not missing, f"the detail does not say {missing}: {problem}"
    assert reply.headers.get("Access-Control-Allow-Origin") == "*", dict(reply.headers)
    return problem


def header_items(reply: Reply, name: str) -> set[str]:
    """The comma-separated items of a header, lower-cased."""
    return {item.strip().lower() for item in reply.headers.get(name, "").split(",") if item.strip()}


class Refused(AssertionError):
    """The server did not answer as a working client needs; says what it answered."""

    def __init__(self, what: str, reply: Reply) -> None:
        super().__init__(f"{what}: {reply.describe()}")
        self.reply = reply


async def request(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: str | None = None,
    content_type: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, data=body, headers=sent) as response:
        return Reply(response.status, response.headers, await response.text())


# --- SDP --------------------------------------------------------------------------------------


def ice_credentials(sdp: str) -> tuple[str, str]:
    ufrag = next(line[12:] for line in sdp.splitlines() if line.startswith("a=ice-ufrag:"))
    pwd = next(line[10:] for line in sdp.splitlines() if line.startswith("a=ice-pwd:"))
    return ufrag, pwd


def candidates_of(sdp: str) -> list[str]:
    """The description's candidates (without `a=`), each once: with max-bundle every media
    section repeats the one transport's."""
    found = [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]
    return list(dict.fromkeys(found))


def media_sections(sdp: str) -> list[tuple[str, str]]:
    """(kind, mid) of each media section, in order."""
    sections: list[tuple[str, str]] = []
    kind = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=mid:") and kind is not None:
            sections.append((kind, line[6:]))
    return sections


def without_candidates(sdp: str, *, end_of_candidates: bool) -> str:
    """The description as a client that has not gathered yet sends it (RFC 8840 §4.3.1): no
    candidates, port 9 and address 0.0.0.0; with `end_of_candidates`, none will follow."""
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith(("a=candidate:", "a=end-of-candidates")):
            continue
        if line.startswith("m="):
            kind, _port, rest = line.split(" ", 2)
            line = f"{kind} 9 {rest}"
        elif line.startswith("c=IN IP4 "):
            line = "c=IN IP4 0.0.0.0"
        lines.append(line)
        if line.startswith("a=mid:") and end_of_candidates:
            lines.append("a=end-of-candidates")
    return "\r\n".join(lines)


def sdpfrag(
    ufrag: str,
    pwd: str,
    section: tuple[str, str],
    candidates: Sequence[str] = (),
    *,
    end_of_candidates: bool = False,
) -> str:
    """An `application/trickle-ice-sdpfrag` body (RFC 8840 §4.4, RFC 9725 §4.3.2) with these
    candidates for one media section, given as (kind, mid)."""
    kind, mid = section
    lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", f"m={kind} 9 UDP/TLS/RTP/SAVPF 0",
             f"a=mid:{mid}", *(f"a={candidate}" for candidate in candidates)]  # fmt: skip
    if end_of_candidates:
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def codecs_named(kind: str, mime_types: Sequence[str]) -> list[RTCRtpCodecCapability]:
    """aiortc's codecs of these MIME types, in the given order, for setCodecPreferences."""
    available = RTCRtpSender.getCapabilities(kind).codecs
    return [c for mime in mime_types for c in available if c.mimeType.lower() == mime.lower()]


def peer_configuration() -> RTCConfiguration:
    # No STUN (aiortc would ask a public server); max-bundle, as RFC 9725 §4.4.1 asks.
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


async def offer_sdp(
    *media: tuple[str, str], video_codecs: Sequence[str] = (), audio_codecs: Sequence[str] = ()
) -> str:
    """An offer from a throwaway peer with one transceiver per (kind, direction), its video
    and audio in `video_codecs` and `audio_codecs` only if given."""
    pc = RTCPeerConnection(peer_configuration())
    only = {"video": video_codecs, "audio": audio_codecs}
    try:
        for kind, direction in media:
            transceiver = pc.addTransceiver(kind, direction=direction)
            if only[kind]:
                transceiver.setCodecPreferences(codecs_named(kind, only[kind]))
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


# --- clients ----------------------------------------------------------------------------------


class HttpPeer:
    """One WHIP or WHEP session seen from the client: its peer connection, and the session
    resource the server made for it (Location, ETag)."""

    kind: ClassVar[str]

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        room: str,
        *,
        token: str | None,
        candidates: Candidates,
    ) -> None:
        self.http = http
        self.endpoint = f"{base_url}/{self.kind}/{room}"
        self.room = room
        self.token = token
        self.candidates = candidates
        self.pc = RTCPeerConnection(peer_configuration())
        self.offer: str | None = None  # as aiortc made it, with every candidate
        self.reply: Reply | None = None  # to the POST
        self.location: str | None = None
        self.etag: str | None = None
        self.deleted = False

    # --- what a publisher and a player do differently --------------------------------------

    def _add_media(self) -> None:
        raise NotImplementedError

    def _offered(self, offer: str) -> None:
        """The offer is made; the answer is not applied yet."""

    def _answered(self) -> None:
        """The answer is applied."""

    async def _close_media(self) -> None:
        await self.pc.close()

    # --- the exchange ----------------------------------------------------------------------

    async def make_offer(self) -> str:
        """The full offer (gathering is over when it returns); made once."""
        if self.offer is None:
            self._add_media()
            await self.pc.setLocalDescription(await self.pc.createOffer())
            self.offer = str(self.pc.localDescription.sdp)
            self._offered(self.offer)
        return self.offer

    async def offer_as_sent(self) -> str:
        offer = await self.make_offer()
        if self.candidates == "offer":
            return offer
        return without_candidates(offer, end_of_candidates=self.candidates == "none")

    async def post(self) -> Reply:
        """POST the offer; on 201 remember the session and apply the answer."""
        body = await self.offer_as_sent()
        reply = await request(
            self.http, "POST", self.endpoint, body=body, content_type=SDP, token=self.token
        )
        self.reply = reply
        if reply.status == 201:
            self.location = reply.headers.get("Location")
            self.etag = reply.headers.get("ETag")
            await self.pc.setRemoteDescription(RTCSessionDescription(reply.text, "answer"))
            self._answered()
        return reply

    async def start(self) -> Reply:
        """POST, insist on a 201, and trickle if this client trickles."""
        reply = await self.post()
        if reply.status != 201:
            raise Refused(f"POST {self.endpoint}", reply)
        if self.candidates == "trickle":
            await self.trickle()
        return reply

    @property
    def session_url(self) -> str:
        assert self.location is not None, f"no session: {self.reply and self.reply.describe()}"
        return str(URL(self.endpoint).join(URL(self.location)))

    def fragment(
        self,
        candidates: Sequence[str] | None = None,
        *,
        end_of_candidates: bool = False,
        ice_restart: bool = False,
    ) -> str:
        """A trickle fragment for this session's first media section: by default with every
        candidate of the offer; with `ice_restart`, under a new ufrag and pwd."""
        assert self.offer is not None, "make_offer() first"
        ufrag, pwd = ice_credentials(self.offer)
        if ice_restart:
            ufrag, pwd = ufrag + "new", pwd + "restarted"
        if candidates is None:
            candidates = candidates_of(self.offer)
        section = media_sections(self.offer)[0]
        return sdpfrag(ufrag, pwd, section, candidates, end_of_candidates=end_of_candidates)

    async def trickle(self) -> None:
        """PATCH every candidate, then end-of-candidates, as RFC 9725 §4.3.2 has it."""
        assert self.etag is not None, "no ETag to send in If-Match"
        for body in (self.fragment(), self.fragment([], end_of_candidates=True)):
            reply = await self.patch(body, headers={"If-Match": self.etag})
            if reply.status != 204:
                raise Refused(f"trickle PATCH {self.session_url}", reply)

    async def patch(
        self, body: str, *, headers: dict[str, str] | None = None, content_type: str = SDPFRAG
    ) -> Reply:
        """PATCH the session with exactly these headers (add If-Match yourself)."""
        return await request(
            self.http,
            "PATCH",
            self.session_url,
            body=body,
            content_type=content_type,
            token=self.token,
            headers=headers,
        )

    async def delete(self) -> Reply:
        self.deleted = True
        return await request(self.http, "DELETE", self.session_url, token=self.token)

    async def get(self) -> Reply:
        return await request(self.http, "GET", self.session_url, token=self.token)

    async def wait_connected(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        await wait_pc_connected(self.pc, timeout, f"{self.kind} {self.room}")

    async def close(self) -> None:
        """DELETE the session (if there is one left), then close the peer; idempotent."""
        if self.location is not None and not self.deleted:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.delete()
        self.deleted = True
        await self._close_media()


class WhipPublisher(HttpPeer):
    """An encoder: a test pattern of `width`x`height` in `colour` (tracks.py), and a tone."""

    kind = "whip"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        room: str,
        *,
        token: str | None,
        candidates: Candidates = "offer",
        video_codec: str = "video/VP8",
        width: int = 320,
        height: int = 240,
        colour: tuple[int, int, int] = (30, 90, 200),
    ) -> None:
        super().__init__(http, base_url, room, token=token, candidates=candidates)
        self.video_codec = video_codec
        self.video = TestPatternTrack(width, height, colour)
        self.audio = ToneTrack()

    def _add_media(self) -> None:
        self.pc.addTrack(self.audio)
        sender = self.pc.addTrack(self.video)
        transceiver = next(t for t in self.pc.getTransceivers() if t.sender is sender)
        transceiver.setCodecPreferences(codecs_named("video", [self.video_codec]))

    async def _close_media(self) -> None:
        self.video.stop()
        self.audio.stop()
        await self.pc.close()


class WhepPlayer(HttpPeer):
    """A player: receives audio and video (in `video_codecs` only, if given) and decodes them
    into a Reception."""

    kind = "whep"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        room: str,
        *,
        token: str | None = None,
        candidates: Candidates = "offer",
        video_codecs: Sequence[str] = (),
    ) -> None:
        super().__init__(http, base_url, room, token=token, candidates=candidates)
        self.video_codecs = video_codecs
        self._reception: Reception | None = None
        self.streams: list[EventStream] = []

    def _add_media(self) -> None:
        self.pc.addTransceiver("audio", direction="recvonly")
        video = self.pc.addTransceiver("video", direction="recvonly")
        if self.video_codecs:
            video.setCodecPreferences(codecs_named("video", self.video_codecs))

    @property
    def reception(self) -> Reception:
        """What this player decoded and received."""
        assert self._reception is not None, f"no offer made; {self.reply and self.reply.describe()}"
        return self._reception

    def _offered(self, offer: str) -> None:
        self._reception = Reception(self.pc, offer)  # before the answer fires "track"

    def _answered(self) -> None:
        self.reception.attach_taps()

    async def wait_frames(
        self, video: int = 10, audio: int = 10, timeout: float = DEFAULT_TIMEOUT
    ) -> Reception:
        await self.reception.wait_frames(video, audio, timeout)
        return self.reception

    def events_url(self) -> str:
        """Where the 201's server-sent events Link points."""
        assert self.reply is not None, "post() first"
        links = self.reply.links(SSE_REL)
        assert len(links) == 1, f"want one {SSE_REL} Link; {self.reply.headers.getall('Link', [])}"
        return str(URL(self.endpoint).join(URL(links[0].url)))

    async def ask_for_events(self, names: Sequence[str]) -> Reply:
        """POST the event names wanted (a JSON array) to the events Link."""
        return await request(
            self.http,
            "POST",
            self.events_url(),
            body=json.dumps(list(names)),
            content_type="application/json",
            token=self.token,
        )

    async def open_events(self, names: Sequence[str]) -> EventStream:
        """Ask for these events and start reading them."""
        reply = await self.ask_for_events(names)
        if reply.status != 201 or "Location" not in reply.headers:
            raise Refused(f"POST {self.events_url()}", reply)
        url = str(URL(self.events_url()).join(URL(reply.headers["Location"])))
        headers = {"Accept": "text/event-stream"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        response = await self.http.get(url, headers=headers, timeout=STREAM_TIMEOUT)
        stream = EventStream(response)
        self.streams.append(stream)
        return stream

    async def _close_media(self) -> None:
        for stream in self.streams:
            await stream.close()
        if self._reception is not None:
            await self._reception.close()
        await self.pc.close()


class EventStream:
    """A WHEP session's server-sent events (`text/event-stream`), recorded as they come."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changes = Changes()
        self.ended = False
        self._taken: set[int] = set()
        self._reader = asyncio.create_task(self._read(), name="whep-events")

    async def _read(self) -> None:
        name, data = "message", list[str]()
        try:
            async for raw in self.response.content:
                line = raw.decode().rstrip("\r\n")
                if not line:  # a blank line dispatches the event
                    if data:
                        self.events.append((name, json.loads("\n".join(data))))
                        self.changes.notify()
                    name, data = "message", []
                elif not line.startswith(":"):  # ":" starts a comment (keep-alive)
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.ended = True
            self.changes.notify()

    def describe(self) -> str:
        state = "ended" if self.ended else "open"
        return f"events {self.events} (stream {state})"

    async def next(
        self,
        name: str,
        where: Callable[[dict[str, Any]], bool] = lambda data: True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """The data of the first `name` event not returned before that satisfies `where`."""

        def find() -> tuple[dict[str, Any]] | None:  # a tuple: `{}` is data but falsy
            for index, (seen, data) in enumerate(self.events):
                if index not in self._taken and seen == name and where(data):
                    self._taken.add(index)
                    return (data,)
            if self.ended:
                raise WaitTimeout(f"stream ended before a {name!r} event; {self.describe()}")
            return None

        found = await self.changes.wait_until(
            find, timeout, lambda: f"{name!r} event; {self.describe()}"
        )
        return found[0]

    async def wait_ended(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self.changes.wait_until(
            lambda: self.ended, timeout, lambda: f"end of the event stream; {self.describe()}"
        )

    async def close(self) -> None:
        self.response.close()
        await stop_reader(self._reader)


# --- the clients of one test --------------------------------------------------------------------


class HttpClients:
    """Makes WHIP/WHEP clients against the server at `url` and closes them all.

    A test should let a client that got its 201 connect before it ends: aioice 0.13 starts
    its consent checks after close() when the connection is closed just as ICE completes,
    and that task (on both sides) then runs forever.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        self._clients: list[HttpPeer] = []
        self._servers: list[tuple[HttpClients, web.AppRunner]] = []

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def publisher(self, room: str, *, token: str | None = MINT, **options: Any) -> WhipPublisher:
        """A WHIP publisher (not started); by default with a publish token for `room`."""
        if token == MINT:
            token = test_token(room, publish=True)
        client = WhipPublisher(self.http, self.url, room, token=token, **options)
        self._clients.append(client)
        return client

    def player(self, room: str, **options: Any) -> WhepPlayer:
        """A WHEP player (not started); with no token unless given one."""
        client = WhepPlayer(self.http, self.url, room, **options)
        self._clients.append(client)
        return client

    async def publishing(self, room: str, **options: Any) -> WhipPublisher:
        """A WHIP publisher that is connected, so the room is live."""
        publisher = self.publisher(room, **options)
        await publisher.start()
        await publisher.wait_connected()
        return publisher

    async def playing(self, room: str, **options: Any) -> WhepPlayer:
        """A WHEP player that has decoded some video and audio."""
        player = self.player(room, **options)
        await player.start()
        await player.wait_frames(10, 10, timeout=10)
        return player

    async def request(self, method: str, path: str, **options: Any) -> Reply:
        return await request(self.http, method, self.url + path, **options)

    async def room(self, room_id: str) -> dict[str, Any] | None:
        """The room's snapshot from the admin API, or None if there is no such room."""
        reply = await self.request("GET", "/api/rooms", token=test_token(admin=True))
        if reply.status != 200:
            raise Refused("GET /api/rooms", reply)
        rooms = json.loads(reply.text)["rooms"]
        return next((room for room in rooms if room["id"] == room_id), None)

    async def serve(self, **settings: Any) -> HttpClients:
        """Start another Netra in this process, with the tests' settings and these; clients
        against it. It stops when these clients close."""
        config = Config(
            host="127.0.0.1",
            port=0,
            candidate_addresses=("127.0.0.1",),
            auth_secret=TEST_SECRET,
            **settings,
        )
        runner = web.AppRunner(create_app(config))
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        except BaseException:
            await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        clients = HttpClients(f"http://{host}:{port}")
        self._servers.append((clients, runner))
        return clients

    async def close(self) -> None:
        # Players first, so the server never sees them lose a stream it is tearing down.
        for client in sorted(self._clients, key=lambda c: not isinstance(c, WhepPlayer)):
            await client.close()
        for clients, runner in self._servers:
            await clients.close()
            await runner.cleanup()
        await self.http.close()
