"""The signaling rules, driven message by message without a network: connections (one per
WebSocket) and the sessions that outlive them."""

import asyncio
import json
import time

import pytest

from netra.agents.agent import AgentContext
from netra.auth import Authority, mint
from netra.config import Config
from netra.limits import AddressLimits
from netra.rooms.registry import RoomRegistry
from netra.signaling.connection import MAX_ERRORS, MAX_OUTBOX, MAX_PENDING_FRAMES, Connection
from netra.signaling.session import MAX_QUEUED
from netra.signaling.sessions import Sessions

SECRET = "unit-test-secret-" + "s" * 40


def publish_token(room: str = "*") -> str:
    return mint(SECRET, room=room, publish=True)


class Hub:
    """What one server's connections share: rooms, sessions, per-address limits."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.rooms = RoomRegistry()
        self.context = AgentContext(
            config=self.config, rooms=self.rooms, ice_servers=[], authority=Authority(SECRET)
        )
        self.sessions = Sessions(self.context)
        self.addresses = AddressLimits(
            max_connections=self.config.max_connections_per_address,
            joins_per_minute=self.config.join_rate,
        )

    async def close(self) -> None:
        await self.sessions.close_all("test over")


class Client:
    """A connection with its outgoing messages collected; `expect` waits for the next one."""

    def __init__(self, hub: Hub):
        self.outgoing: asyncio.Queue = asyncio.Queue()
        self.closed_with: tuple[int, str] | None = None

        async def send(text):
            await self.outgoing.put(json.loads(text))

        async def close(code, reason):
            self.closed_with = (code, reason)
            self.connection.socket_closed()

        self.connection = Connection(
            sessions=hub.sessions,
            send=send,
            close=close,
            address="192.0.2.1",
            limits=hub.addresses,
            message_rate=hub.config.message_rate,
        )
        self.task = asyncio.create_task(self.connection.run())

    @property
    def agent(self):
        session = self.connection.session
        return session.agent if session is not None else None

    def send(self, message) -> None:
        self.connection.receive(message if isinstance(message, str) else json.dumps(message))

    async def expect(self, type_: str, timeout: float = 5.0) -> dict:
        seen = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await self.outgoing.get()
                    if message["type"] == type_:
                        return message
                    seen.append(message)
        except TimeoutError:
            raise AssertionError(f"no {type_!r} within {timeout}s; got {seen}") from None

    async def error(self, message) -> dict:
        self.send(message)
        return await self.expect("error")

    async def join(self, room="r", role="viewer", **extra) -> dict:
        message = {"type": "join", "roomId": room, "role": role, **extra}
        if role == "streamer":
            message["token"] = publish_token(room)
        self.send(message)
        return await self.expect("joined")

    async def stop(self) -> None:
        self.connection.socket_closed()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def hub():
    hub = Hub()
    yield hub
    await hub.close()


@pytest.fixture
def rooms(hub):
    return hub.rooms


@pytest.fixture
async def client(hub):
    c = Client(hub)
    yield c
    await c.stop()


async def test_join_binds_room_and_role_and_reports_the_room(client):
    joined = await client.join("lobby", "viewer")
    assert joined["roomId"] == "lobby" and joined["role"] == "viewer"
    assert joined["live"] is False and joined["iceServers"] == []
    assert len(joined["clientId"]) >= 8
    assert (await client.expect("viewers"))["count"] == 1


async def test_messages_before_join_are_refused_as_not_joined(client):
    for message in ({"type": "offer", "sdp": "v=0"}, {"type": "leave"},
                    {"type": "candidate", "candidate": None}, {"type": "answer", "sdp": "x"}):
        error = await client.error(message)
        assert error["code"] == "not-joined" and error["ref"] == message["type"]


async def test_ping_works_before_and_after_join(client):
    client.send({"type": "ping", "id": "a"})
    assert (await client.expect("pong"))["id"] == "a"
    await client.join()
    client.send({"type": "ping", "id": 2})
    assert (await client.expect("pong"))["id"] == 2


async def test_a_message_naming_another_room_is_refused(client):
    await client.join("mine", "streamer")
    error = await client.error({"type": "offer", "roomId": "theirs", "sdp": "v=0"})
    assert error["code"] == "wrong-room"


async def test_a_message_repeating_its_own_room_is_accepted(client):
    await client.join("mine", "viewer")
    client.send({"type": "leave", "roomId": "mine"})
    client.send({"type": "ping", "id": 1})
    await client.expect("pong")
    assert client.agent is None


async def test_a_second_join_is_refused(client):
    await client.join()
    assert (await client.error({"type": "join", "roomId": "x", "role": "viewer"}))["code"] == (
        "already-joined"
    )


async def test_whoever_sends_media_makes_the_offer(hub):
    viewer, streamer = Client(hub), Client(hub)
    try:
        await viewer.join("r", "viewer")
        await streamer.join("r", "streamer")
        assert (await viewer.error({"type": "offer", "sdp": "v=0"}))["code"] == "wrong-role"
        assert (await streamer.error({"type": "answer", "sdp": "v=0"}))["code"] == "wrong-role"
    finally:
        await viewer.stop()
        await streamer.stop()


async def test_an_answer_without_an_offer_is_out_of_order(client):
    await client.join("r", "viewer")
    assert (await client.error({"type": "answer", "sdp": "v=0"}))["code"] == "out-of-order"
    error = await client.error({"type": "candidate", "candidate": None})
    assert error["code"] == "out-of-order"


async def test_a_second_streamer_is_refused_with_streamer_exists(hub):
    first, second = Client(hub), Client(hub)
    try:
        await first.join("r", "streamer")
        second.send({"type": "join", "roomId": "r", "role": "streamer",
                     "token": publish_token()})  # fmt: skip
        error = await second.expect("error")
        assert error["code"] == "streamer-exists" and "already has a streamer" in error["message"]
        assert second.agent is None  # and it may join as a viewer instead
        await second.join("r", "viewer")
    finally:
        await first.stop()
        await second.stop()


async def test_an_unusable_offer_fails_negotiation_and_the_session_stays_usable(client):
    await client.join("r", "streamer")
    error = await client.error({"type": "offer", "sdp": "v=0\r\nthis is not sdp"})
    assert error["code"] == "negotiation-failed"
    assert client.agent.peer is None
    client.send({"type": "ping"})
    await client.expect("pong")


async def test_garbage_gets_typed_errors_then_the_connection_is_closed(client):
    codes = []
    for _ in range(MAX_ERRORS - 1):
        codes.append((await client.error("{nope"))["code"])
    assert set(codes) == {"bad-json"}
    assert client.closed_with is None
    final = await client.error('{"type":"bogus"}')
    assert final["code"] == "too-many-errors"
    await asyncio.wait_for(client.task, 5)
    assert client.closed_with[0] == 1008


async def test_one_bad_client_does_not_affect_another(hub):
    bad, good = Client(hub), Client(hub)
    try:
        await good.join("r", "viewer")
        for _ in range(MAX_ERRORS):
            bad.send("garbage")
        await asyncio.wait_for(bad.task, 5)
        good.send({"type": "ping", "id": 2})
        assert (await good.expect("pong"))["id"] == 2
        assert good.agent.room is hub.rooms.get("r")
    finally:
        await good.stop()
        await bad.stop()


async def test_closing_the_socket_leaves_the_room_when_there_is_no_grace_period():
    hub = Hub(Config(grace_period=0))
    client = Client(hub)
    await client.join("r", "viewer")
    await client.stop()
    await asyncio.wait_for(asyncio.gather(*hub.sessions._closing), 5)
    assert hub.rooms.get("r") is None


async def test_a_dropped_socket_keeps_the_session_until_its_grace_period_ends():
    hub = Hub(Config(grace_period=0.5))
    try:
        client = Client(hub)
        await client.join("r", "viewer")
        await client.stop()
        viewer = next(iter(hub.rooms.get("r").viewers.values()))
        assert viewer.attached is False  # still in the room, away
        async with asyncio.timeout(5):
            while hub.rooms.get("r") is not None:
                await asyncio.sleep(0.05)
    finally:
        await hub.close()


async def test_a_resume_gets_the_same_session_and_what_was_queued_in_order(hub):
    viewer, other = Client(hub), Client(hub)
    try:
        joined = await viewer.join("r", "viewer")
        await viewer.expect("viewers")
        await viewer.stop()  # the socket drops; the session is parked
        await other.join("r", "viewer")  # told to the parked viewer: queued
        await other.stop()
        back = Client(hub)
        resumed = await back.join("r", "viewer", resumeKey=joined["resumeKey"])
        assert resumed["resumed"] is True and resumed["clientId"] == joined["clientId"]
        assert resumed["resumeKey"] != joined["resumeKey"]  # single use
        assert (await back.expect("viewers"))["count"] == 2  # the queued news, then the count
        assert (await back.expect("viewers"))["count"] == 2
        await back.stop()
        again = Client(hub)
        stale = await again.join("r", "viewer", resumeKey=joined["resumeKey"])
        assert stale["resumed"] is False and stale["resumeError"] == "expired"
        assert stale["clientId"] != joined["clientId"]
        await again.stop()
    finally:
        await viewer.stop()
        await other.stop()


async def test_a_resume_key_works_only_in_its_own_room_and_role(hub):
    client = Client(hub)
    joined = await client.join("r", "viewer")
    await client.stop()
    for room, role in (("elsewhere", "viewer"), ("r", "streamer")):
        stranger = Client(hub)
        refused = await stranger.join(room, role, resumeKey=joined["resumeKey"])
        assert refused["resumed"] is False and refused["resumeError"] == "mismatch"
        assert refused["clientId"] != joined["clientId"]
        await stranger.stop()
    owner = Client(hub)
    assert (await owner.join("r", "viewer", resumeKey=joined["resumeKey"]))["resumed"] is True
    await owner.stop()


async def test_a_resume_replaces_a_connection_the_server_still_thinks_alive(hub):
    old, new = Client(hub), Client(hub)
    try:
        joined = await old.join("r", "streamer")
        resumed = await new.join("r", "streamer", resumeKey=joined["resumeKey"])
        assert resumed["resumed"] is True and resumed["clientId"] == joined["clientId"]
        assert (await old.expect("error"))["code"] == "replaced"
        await asyncio.wait_for(old.task, 5)
        assert old.closed_with[0] == 4001
        assert hub.rooms.get("r").streamer is new.agent.participant
    finally:
        await old.stop()
        await new.stop()


async def test_a_parked_session_whose_queue_overflows_ends_with_a_reason(hub):
    client = Client(hub)
    joined = await client.join("r", "viewer")
    await client.stop()
    session = hub.sessions._by_key[joined["resumeKey"]]
    for _ in range(MAX_QUEUED + 1):
        session.stream_resumed()  # any message that is kept in full
    await asyncio.wait_for(asyncio.gather(*hub.sessions._closing), 5)
    assert hub.rooms.get("r") is None
    back = Client(hub)
    refused = await back.join("r", "viewer", resumeKey=joined["resumeKey"])
    assert refused["resumed"] is False and refused["resumeError"] == "queue-overflow"
    assert hub.context.events["resume_queue_overflows"] == 1
    await back.stop()


async def test_a_resume_key_is_the_clients_own_and_fresh_on_each_join(hub):
    a, b = Client(hub), Client(hub)
    try:
        key_a = (await a.join("r", "viewer"))["resumeKey"]
        key_b = (await b.join("r", "viewer"))["resumeKey"]
        assert key_a != key_b and len(key_a) >= 16
    finally:
        await a.stop()
        await b.stop()


async def test_a_streamer_offer_that_sends_nothing_is_refused(client):
    from aiortc import RTCConfiguration, RTCPeerConnection

    await client.join("r", "streamer")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        offer = await pc.createOffer()  # no gathering: createOffer alone touches no network
    finally:
        await pc.close()
    error = await client.error({"type": "offer", "sdp": offer.sdp})
    assert error["code"] == "negotiation-failed" and "sendonly" in error["message"]


async def test_publishing_needs_a_token_with_the_publish_grant_for_the_room(client):
    refusals = {
        None: "unauthorized",
        "not-a-jwt": "unauthorized",
        mint("another-secret-" + "z" * 40, room="r", publish=True): "unauthorized",
        mint(SECRET, room="r", publish=True, ttl=60, now=time.time() - 600): "unauthorized",
        mint(SECRET, room="elsewhere", publish=True): "forbidden",
        mint(SECRET, room="r", subscribe=True): "forbidden",
    }
    for token, code in refusals.items():
        message = {"type": "join", "roomId": "r", "role": "streamer"}
        if token is not None:
            message["token"] = token
        error = await client.error(message)
        assert error["code"] == code and error["ref"] == "join", (token, error)
    assert client.agent is None
    client.send({"type": "join", "roomId": "r", "role": "streamer",
                 "token": mint(SECRET, room="r", publish=True)})  # fmt: skip
    assert (await client.expect("joined"))["role"] == "streamer"


async def test_viewers_need_a_subscribe_token_only_where_the_server_says_so(hub):
    locked_hub = Hub(Config(viewers_need_token=True))
    open_door, locked = Client(hub), Client(locked_hub)
    try:
        await open_door.join("r", "viewer")  # no token: viewing is open by default
        join = {"type": "join", "roomId": "r", "role": "viewer"}
        assert (await locked.error(join))["code"] == "unauthorized"
        publish_only = mint(SECRET, room="r", publish=True)
        assert (await locked.error({**join, "token": publish_only}))["code"] == "forbidden"
        locked.send({**join, "token": mint(SECRET, room="r", subscribe=True)})
        assert (await locked.expect("joined"))["role"] == "viewer"
    finally:
        await open_door.stop()
        await locked.stop()
        await locked_hub.close()


async def test_a_client_that_stops_reading_is_closed_and_its_session_kept(hub):
    """Its outbox fills (the socket's writes never complete): the connection is closed as
    not reading, and the session is parked, so nothing the client missed is lost."""
    stuck = asyncio.Event()
    closed: list[tuple[int, str]] = []

    async def never_sends(text):
        await stuck.wait()

    async def close(code, reason):
        closed.append((code, reason))

    connection = Connection(sessions=hub.sessions, send=never_sends, close=close,
                            address="192.0.2.9", limits=hub.addresses,
                            message_rate=1000.0)  # fmt: skip
    task = asyncio.create_task(connection.run())
    connection.receive(json.dumps({"type": "join", "roomId": "r", "role": "viewer"}))
    async with asyncio.timeout(5):
        while connection.session is None:
            await asyncio.sleep(0.01)
    session = connection.session
    for _ in range(MAX_OUTBOX):
        session.stream_resumed()  # more than the outbox holds
    await asyncio.wait_for(task, 5)
    assert closed == [(1008, "client not reading")]
    assert session.link is None and not session.ended  # parked, with what was not written
    assert len(session._queue) > 0


async def test_a_flood_of_frames_faster_than_they_are_handled_closes_the_connection(hub):
    client = Client(hub)
    for n in range(MAX_PENDING_FRAMES + 1):  # all at once: none handled in between
        client.send({"type": "ping", "id": n})
    await asyncio.wait_for(client.task, 5)
    assert client.closed_with == (1008, "too many unprocessed messages")


async def test_a_resume_is_not_counted_against_the_join_rate():
    hub = Hub(Config(join_rate=1))
    try:
        first = Client(hub)
        joined = await first.join("r", "viewer")
        await first.stop()
        back = Client(hub)  # a network blip: every client comes back at once
        assert (await back.join("r", "viewer", resumeKey=joined["resumeKey"]))["resumed"]
        stranger = Client(hub)
        refused = await stranger.error({"type": "join", "roomId": "r", "role": "viewer"})
        assert refused["code"] == "too-many-joins", refused
        await back.stop()
        await stranger.stop()
    finally:
        await hub.close()
