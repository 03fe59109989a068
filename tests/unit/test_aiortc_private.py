import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

import aioice.ice
import aioice.stun
import aiortc
import pytest

from netra.media import aiortc_private


def test_every_private_aiortc_name_the_forwarder_uses_exists():
    aiortc_private.check()


def test_a_missing_private_name_fails_loudly(monkeypatch):
    monkeypatch.delattr(aiortc.RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(aiortc_private.PrivateApiMissing, match="_send_rtcp_pli"):
        aiortc_private.check()


def test_the_pinned_aiortc_version_is_1_16():
    assert aiortc.__version__.startswith("1.16.")


def test_a_missing_instance_attribute_fails_loudly(monkeypatch):
    monkeypatch.setattr(aiortc_private, "_INSTANCE_NAMES", ((aiortc.RTCRtpSender, "_gone"),))
    with pytest.raises(aiortc_private.PrivateApiMissing, match="RTCRtpSender._gone"):
        aiortc_private.check()


# --- ICE: clients that offer no candidates, checks without PRIORITY ------------------------

CONNECT_TIMEOUT = 5.0


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice on 127.0.0.1, with tolerate_clients_without_candidates() for this test only."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    for name in ("check_incoming", "_end_remote_candidates"):
        monkeypatch.setattr(aioice.ice.Connection, name, getattr(aioice.ice.Connection, name))
    aiortc_private.tolerate_clients_without_candidates()
    yield


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """What reaches the event loop's exception handler during the test."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


@contextlib.asynccontextmanager
async def ice_pair() -> AsyncIterator[tuple[aioice.ice.Connection, aioice.ice.Connection]]:
    """A server (controlled, as Netra's answering Peer is) and a client, both gathered on
    127.0.0.1, each knowing the other's credentials."""
    server = aioice.ice.Connection(ice_controlling=False, components=1)
    client = aioice.ice.Connection(ice_controlling=True, components=1)
    try:
        await asyncio.gather(server.gather_candidates(), client.gather_candidates())
        for one, other in ((server, client), (client, server)):
            one.remote_username, one.remote_password = other.local_username, other.local_password
        yield server, client
    finally:
        await asyncio.gather(server.close(), client.close())


async def test_a_server_given_no_candidates_and_end_of_candidates_learns_the_client(loopback):
    async with ice_pair() as (server, client):
        # The OBS 30.2+ / FFmpeg offer: no candidates, then a=end-of-candidates.
        await server.add_remote_candidate(None)
        for candidate in server.local_candidates:  # the server's answer lists its own
            await client.add_remote_candidate(candidate)
        await client.add_remote_candidate(None)

        await asyncio.wait_for(asyncio.gather(server.connect(), client.connect()), CONNECT_TIMEOUT)

        assert [c.type for c in server.remote_candidates] == ["prflx"]
        await client.send(b"media")
        assert await asyncio.wait_for(server.recv(), CONNECT_TIMEOUT) == b"media"


async def test_unpatched_aioice_gives_up_at_once_on_an_offer_without_candidates(
    loopback, monkeypatch
):
    """Why the patch exists; if this fails, aioice changed and the patch may go."""
    name = "_end_remote_candidates"
    original = aiortc_private.unpatched(aioice.ice.Connection, name)
    monkeypatch.setattr(aioice.ice.Connection, name, original)
    async with ice_pair() as (server, _client):
        await server.add_remote_candidate(None)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(server.connect(), CONNECT_TIMEOUT)


class _RawClient(asyncio.DatagramProtocol):
    """A UDP socket that sends hand-made STUN and keeps what comes back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[aioice.stun.Message] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(aioice.stun.parse_message(data))

    async def next(self, message_class: aioice.stun.Class) -> aioice.stun.Message:
        while True:
            message = await asyncio.wait_for(self.received.get(), CONNECT_TIMEOUT)
            if message.message_class == message_class:
                return message


def _binding_request_without_priority(server: aioice.ice.Connection) -> bytes:
    request = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING, message_class=aioice.stun.Class.REQUEST
    )
    request.attributes["USERNAME"] = f"{server.local_username}:{server.remote_username}"
    request.attributes["ICE-CONTROLLING"] = secrets.randbits(64)
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(server.local_password.encode())
    request.add_fingerprint()
    assert "PRIORITY" not in request.attributes
    return bytes(request)


@pytest.mark.parametrize("before_connect", [False, True], ids=["during", "before-connect"])
async def test_a_binding_request_without_priority_is_answered_and_learnt(
    loopback, loop_errors, before_connect
):
    loop = asyncio.get_running_loop()
    transport, raw = await loop.create_datagram_endpoint(_RawClient, local_addr=("127.0.0.1", 0))
    try:
        async with ice_pair() as (server, _client):
            await server.add_remote_candidate(None)
            target = server.local_candidates[0]
            connecting = None if before_connect else asyncio.ensure_future(server.connect())

            transport.sendto(_binding_request_without_priority(server), (target.host, target.port))
            response = await raw.next(aioice.stun.Class.RESPONSE)
            assert response.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")
            if connecting is None:  # a check received before connect() is handled by it
                connecting = asyncio.ensure_future(server.connect())

            # The server learnt our address: its triggered check comes to us.
            check = await raw.next(aioice.stun.Class.REQUEST)
            expected = f"{server.remote_username}:{server.local_username}"
            assert check.attributes["USERNAME"] == expected
            assert [c.type for c in server.remote_candidates] == ["prflx"]
            assert not connecting.done() or connecting.exception() is None
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await connecting
    finally:
        transport.close()
    assert loop_errors == []


def test_the_ice_patches_are_idempotent(loopback):
    aiortc_private.tolerate_clients_without_candidates()
    patched = aioice.ice.Connection.check_incoming
    aiortc_private.tolerate_clients_without_candidates()
    assert aioice.ice.Connection.check_incoming is patched
    original = aiortc_private.unpatched(aioice.ice.Connection, "check_incoming")
    assert original is not patched and original.__name__ == "check_incoming"


async def test_a_closed_ice_connection_starts_no_consent_checks():
    """aioice's connect() may start them after close() (a check that succeeded just before);
    the task would then wake every 5 s for as long as the server runs."""
    aiortc_private.no_consent_checks_after_close()
    connection = aioice.ice.Connection(ice_controlling=True)
    connection.remote_password = "remote-password"
    await connection.close()
    await asyncio.wait_for(connection.query_consent(), timeout=1.0)


# --- Receiving media in aioice's datagram callback ------------------------------------------


async def test_a_packet_handler_that_does_wait_is_finished_once_what_it_waits_for_is_done():
    waited_for = asyncio.get_running_loop().create_future()
    finished = asyncio.Event()
    steps: list[str] = []

    async def handler() -> None:
        steps.append("started")
        steps.append(await waited_for)
        finished.set()

    aiortc_private.run_to_completion(handler())
    assert steps == ["started"]
    waited_for.set_result("resumed")
    await asyncio.wait_for(finished.wait(), timeout=1.0)
    assert steps == ["started", "resumed"]


async def test_video_received_in_the_datagram_callback_decodes_as_through_aiortcs_queue(
    loopback, monkeypatch
):
    monkeypatch.setattr(
        aioice.ice.StunProtocol, "datagram_received", aioice.ice.StunProtocol.datagram_received
    )
    aiortc_private.receive_media_directly()
    direct = []
    handle = aiortc_private.DirectReceive.__call__

    def counted(self, data):
        handled = handle(self, data)
        direct.append(handled)
        return handled

    monkeypatch.setattr(aiortc_private.DirectReceive, "__call__", counted)
    config = aiortc.RTCConfiguration(iceServers=[])
    sender, receiver = aiortc.RTCPeerConnection(config), aiortc.RTCPeerConnection(config)
    tracks: asyncio.Queue[aiortc.MediaStreamTrack] = asyncio.Queue()
    receiver.on("track", tracks.put_nowait)
    try:
        sender.addTrack(aiortc.VideoStreamTrack())
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        dtls = receiver.getTransceivers()[0].receiver.transport
        aiortc_private.DirectReceive(dtls)
        queued_media = []
        ice = dtls.transport._connection
        by_queue = ice.data_received

        def data_received(data, component):
            if dtls.state == "connected" and 127 < data[0] < 192:
                queued_media.append(data)
            by_queue(data, component)

        ice.data_received = data_received
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        track = await asyncio.wait_for(tracks.get(), CONNECT_TIMEOUT)
        for _ in range(10):
            frame = await asyncio.wait_for(track.recv(), CONNECT_TIMEOUT)
            assert (frame.width, frame.height) == (640, 480)
        assert direct.count(True) >= 10, direct.count(True)
        assert queued_media == []
    finally:
        await asyncio.gather(sender.close(), receiver.close())
