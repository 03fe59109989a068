"""The signaling session's rules, driven message by message without a network."""

import asyncio
import json
import time

import pytest

from netra.agents.agent import AgentContext
from netra.auth import Authority, mint
from netra.config import Config
from netra.rooms.registry import RoomRegistry
from netra.signaling.session import MAX_ERRORS, SignalingSession

SECRET = "unit-test-secret-" + "s" * 40


def publish_token(room: str = "*") -> str:
    return mint(SECRET, room=room, publish=True)


class Client:
    """A session with its outgoing messages collected; `expect` waits for the next one."""

    def __init__(self, rooms: RoomRegistry, config: Config | None = None):
        self.outgoing: asyncio.Queue = asyncio.Queue()
        self.closed_with: tuple[int, str] | None = None

        async def send(text):
            await self.outgoing.put(json.loads(text))

        async def close(code, reason):
            self.closed_with = (code, reason)
            self.session.socket_closed()

        context = AgentContext(
            config=config or Config(), rooms=rooms, ice_servers=[], authority=Authority(SECRET)
        )
        self.session = SignalingSession(context=context, send=send, close=close)
        self.task = asyncio.create_task(self.session.run())

    def send(self, message) -> None:
        self.session.receive(message if isinstance(message, str) else json.dumps(message))

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

    async def join(self, room="r", role="viewer") -> dict:
        message = {"type": "join", "roomId": room, "role": role}
        if role == "streamer":
            message["token"] = publish_token(room)
        self.send(message)
        return await self.expect("joined")

    async def stop(self) -> None:
        self.session.socket_closed()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def rooms():
    return RoomRegistry()


@pytest.fixture
async def client(rooms):
    c = Client(rooms)
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
    assert client.session.agent is None


async def test_a_second_join_is_refused(client):
    await client.join()
    assert (await client.error({"type": "join", "roomId": "x", "role": "viewer"}))["code"] == (
        "already-joined"
    )


async def test_whoever_sends_media_makes_the_offer(rooms):
    viewer, streamer = Client(rooms), Client(rooms)
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


async def test_a_second_streamer_is_refused_with_streamer_exists(rooms):
    first, second = Client(rooms), Client(rooms)
    try:
        await first.join("r", "streamer")
        second.send({"type": "join", "roomId": "r", "role": "streamer",
                     "token": publish_token()})  # fmt: skip
        error = await second.expect("error")
        assert error["code"] == "streamer-exists" and "already has a streamer" in error["message"]
        assert second.session.agent is None  # and it may join as a viewer instead
        await second.join("r", "viewer")
    finally:
        await first.stop()
        await second.stop()


async def test_an_unusable_offer_fails_negotiation_and_the_session_stays_usable(client):
    await client.join("r", "streamer")
    error = await client.error({"type": "offer", "sdp": "v=0\r\nthis is not sdp"})
    assert error["code"] == "negotiation-failed"
    assert client.session.agent.peer is None
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


async def test_one_bad_client_does_not_affect_another(rooms):
    bad, good = Client(rooms), Client(rooms)
    try:
        await good.join("r", "viewer")
        for _ in range(MAX_ERRORS):
            bad.send("garbage")
        await asyncio.wait_for(bad.task, 5)
        good.send({"type": "ping", "id": 2})
        assert (await good.expect("pong"))["id"] == 2
        assert good.session.agent.room is rooms.get("r")
    finally:
        await good.stop()
        await bad.stop()


async def test_closing_the_socket_leaves_the_room(rooms):
    client = Client(rooms)
    await client.join("r", "viewer")
    await client.stop()
    assert rooms.get("r") is None


async def test_a_rejoin_with_the_resume_key_replaces_the_old_connection(rooms):
    old, new = Client(rooms), Client(rooms)
    try:
        joined = await old.join("r", "streamer")
        new.send({"type": "join", "roomId": "r", "role": "streamer",
                  "resumeKey": joined["resumeKey"], "token": publish_token()})  # fmt: skip
        assert (await new.expect("joined"))["role"] == "streamer"
        assert (await old.expect("error"))["code"] == "replaced"
        await asyncio.wait_for(old.task, 5)
        assert old.closed_with[0] == 4001
        assert rooms.get("r").streamer is new.session.agent.participant
    finally:
        await old.stop()
        await new.stop()


async def test_a_resume_key_is_the_clients_own_and_fresh_on_each_join(rooms):
    a, b = Client(rooms), Client(rooms)
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
    assert client.session.agent is None
    client.send({"type": "join", "roomId": "r", "role": "streamer",
                 "token": mint(SECRET, room="r", publish=True)})  # fmt: skip
    assert (await client.expect("joined"))["role"] == "streamer"


async def test_viewers_need_a_subscribe_token_only_where_the_server_says_so(rooms):
    open_door, locked = Client(rooms), Client(rooms, Config(viewers_need_token=True))
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
