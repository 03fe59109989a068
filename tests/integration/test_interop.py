"""Interop with publishers that are not browsers: FFmpeg's WHIP muxer (through PyAV) and
OBS-style offers without ICE candidates.

FFmpeg's test runs its own WHIP endpoint on Netra's Peer in a subprocess, because the DTLS fix
(netra.media.dtls) must run before anything imports `cryptography`, which this process did
long ago; the publisher is a subprocess too, so that both can be killed when a wait runs out.
Everything stays on 127.0.0.1 with no ICE servers, so it runs in a private network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.ice
import av  # a missing PyAV fails this module: FFmpeg interop is a requirement, not a bonus
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription, parse_h264_profile_level_id
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from netra.media import aiortc_private, dtls
from netra.media.codecs import H264_PROFILE_LEVEL_IDS, h264_variant
from netra.media.peer import Peer

START_TIMEOUT = 20.0  # a subprocess importing aiortc and aiohttp
PUBLISH_TIMEOUT = 40.0  # ICE, DTLS, 2 s of real-time media, DELETE
EVENT_TIMEOUT = 10.0
SECONDS = 2
FPS = 30

# A WHIP endpoint (RFC 9725) on Netra's Peer: POST an offer -> 201 + answer + Location,
# DELETE the session -> 200. One JSON line per event on stdout; ends when stdin closes.
RECEIVER = r"""
import asyncio, json, sys

from netra.media import dtls

if "--no-dtls-fix" in sys.argv:
    p224 = None
else:
    p224 = dtls.accept_ffmpeg_certificates()  # first: before anything imports cryptography

from aiohttp import web

from netra.media import aiortc_private
from netra.media.peer import Peer

aiortc_private.offer_host_addresses(["127.0.0.1"])
aiortc_private.accept_h264_profiles()
aiortc_private.tolerate_clients_without_candidates()


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


async def main():
    sessions = {}

    async def post(request):
        if request.content_type != "application/sdp":
            return web.Response(status=415)
        offer = await request.text()
        peer = Peer(
            ice_servers=[],
            connect_timeout=20,
            announced_ip=None,
            on_state=lambda peer, state: emit("state", state=state),
        )
        answer = await peer.accept_offer(offer)
        sessions["1"] = peer
        emit("answer", offer=offer, answer=answer)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": "/whip/session/1"},
        )

    async def delete(request):
        peer = sessions.pop(request.match_info["id"], None)
        if peer is None:
            return web.Response(status=404)
        publications = [
            {"kind": p.kind, "mime": p.codec.mimeType, "parameters": p.codec.parameters,
             "packets": p.stats["packets"], "keyframes": p.stats["keyframes"]}
            for p in peer.publications
        ]
        await peer.close()
        emit("deleted", publications=publications)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/whip/room", post)
    app.router.add_delete("/whip/session/{id}", delete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    emit("ready", url=f"http://{host}:{port}/whip/room", p224=p224)
    await asyncio.to_thread(sys.stdin.read)  # until the test closes stdin
    for peer in sessions.values():
        await peer.close()
    await runner.cleanup()


asyncio.run(main())
"""

# FFmpeg's WHIP muxer with its defaults, fed by libx264 and libopus in real time.
PUBLISHER = str(Path(__file__).parents[1] / "clients" / "ffmpeg_publish.py")


class Receiver:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []

    async def event(self, name: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                line = await asyncio.wait_for(
                    self.process.stdout.readline(), max(0.0, deadline - loop.time())
                )
            except TimeoutError:
                raise AssertionError(f"no {name!r} from the receiver; saw {self.seen}") from None
            if not line:
                raise AssertionError(f"the receiver exited before {name!r}; saw {self.seen}")
            event = json.loads(line)
            self.seen.append(event)
            if event["event"] == name:
                return event


async def _run(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, *args, **kwargs)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), EVENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def whip_receiver(*args: str) -> AsyncIterator[Receiver]:
    process = await _run(
        "-c", RECEIVER, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield Receiver(process)
    finally:
        await _stop(process)


@dataclass
class Published:
    sent: dict[str, int]  # frames the publisher encoded
    offer: str
    answer: str
    states: list[str]  # the receiving Peer's
    publications: dict[str, dict[str, Any]]  # by kind, as counted at DELETE


async def publish_with_ffmpeg(
    profile: str, options: dict[str, str] | None = None, *receiver_args: str
) -> Published:
    """Publish SECONDS of H.264 and Opus with FFmpeg's WHIP muxer into a WHIP endpoint."""
    async with whip_receiver(*receiver_args) as receiver:
        ready = await receiver.event("ready", START_TIMEOUT)
        publisher = await _run(
            PUBLISHER,
            ready["url"],
            profile,
            str(SECONDS),
            str(FPS),
            json.dumps(options or {}),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(publisher.communicate(), PUBLISH_TIMEOUT)
        finally:
            if publisher.returncode is None:
                publisher.kill()
                await publisher.wait()
        negotiated = await receiver.event("answer")
        assert publisher.returncode == 0, (
            f"FFmpeg failed to publish; aiortc's DTLS accepts P-224 certificates: "
            f"{ready['p224']} (needs cryptography<47)\n{receiver.seen}\n{err.decode()[-3000:]}"
        )
        deleted = await receiver.event("deleted")
    return Published(
        sent=json.loads(out),
        offer=negotiated["offer"],
        answer=negotiated["answer"],
        states=[e["state"] for e in receiver.seen if e["event"] == "state"],
        publications={p["kind"]: p for p in deleted["publications"]},
    )


def assert_media_arrived(published: Published) -> None:
    assert "connected" in published.states, published.states
    video, audio = published.publications["video"], published.publications["audio"]
    assert video["mime"] == "video/H264"
    assert h264_variant(video["parameters"]) == _h264_fmtp(published.answer)
    assert audio["mime"].lower() == "audio/opus"
    # Every frame is at least one RTP packet; allow the last few in flight at DELETE.
    sent = published.sent
    assert video["packets"] >= sent["video_frames"] - 5, (video, sent)
    assert video["keyframes"] >= SECONDS, video  # one GOP a second
    assert audio["packets"] >= sent["audio_frames"] - 5, (audio, sent)


def _h264_fmtp(sdp: str) -> tuple[str, str]:
    (video,) = [m for m in SessionDescription.parse(sdp).media if m.kind == "video"]
    h264 = [c for c in video.rtp.codecs if c.mimeType.lower() == "video/h264"]
    return h264_variant(h264[0].parameters)


def test_pyav_has_ffmpeg_with_the_whip_muxer_and_the_encoders():
    assert "whip" in av.formats_available, f"PyAV {av.__version__}: no WHIP muxer"
    assert {"libx264", "libopus"} <= av.codecs_available, f"PyAV {av.__version__}"


async def test_dtls_accepts_ffmpegs_p224_certificates_once_set_up_at_start():
    """Fails the day `cryptography` (OpenSSL 4) can no longer do it: see netra.media.dtls."""
    probe = "from netra.media import dtls; print(dtls.accept_ffmpeg_certificates())"
    process = await _run("-c", probe, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert out.decode().strip() == "True", "DTLS refuses P-224: needs cryptography<47"


@pytest.mark.parametrize("profile", ["baseline", "high"])
async def test_ffmpeg_whip_muxer_publishes_h264_and_opus_with_its_defaults(profile):
    published = await publish_with_ffmpeg(profile)

    assert_media_arrived(published)
    offered, answered = _h264_fmtp(published.offer), _h264_fmtp(published.answer)
    if offered[0] in H264_PROFILE_LEVEL_IDS:
        assert answered == offered
    profile_of = parse_h264_profile_level_id
    assert profile_of(answered[0])[0] == profile_of(offered[0])[0], (offered, answered)


async def test_ffmpeg_given_a_p256_certificate_needs_no_dtls_fix(tmp_path):
    """The client-side way round (README): FFmpeg's -cert_file/-key_file with a P-256
    certificate is accepted by any OpenSSL, including cryptography >= 47's."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = dtls.self_signed(key, "whip")
    cert_file, key_file = tmp_path / "whip.crt", tmp_path / "whip.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    options = {"cert_file": str(cert_file), "key_file": str(key_file)}

    assert_media_arrived(await publish_with_ffmpeg("baseline", options, "--no-dtls-fix"))


async def test_a_publisher_that_offers_no_candidates_connects_peer_reflexively(
    loopback_candidates, monkeypatch
):
    """OBS 30.2+ and FFmpeg offer no candidates plus a=end-of-candidates and never trickle."""
    for name in ("check_incoming", "_end_remote_candidates"):  # patched for this test only
        monkeypatch.setattr(aioice.ice.Connection, name, getattr(aioice.ice.Connection, name))
    aiortc_private.tolerate_clients_without_candidates()
    states: asyncio.Queue[str] = asyncio.Queue()
    server = Peer(
        ice_servers=[],
        connect_timeout=20,
        announced_ip=None,
        on_state=lambda _peer, state: states.put_nowait(state),
    )
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        client.addTransceiver("audio", direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        lines = client.localDescription.sdp.split("\r\n")
        offer = "\r\n".join(line for line in lines if not line.startswith("a=candidate:"))
        assert "a=end-of-candidates" in offer and "a=candidate:" not in offer

        answer = await server.accept_offer(offer)
        await client.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        seen = []
        while "connected" not in seen:
            try:
                seen.append(await asyncio.wait_for(states.get(), EVENT_TIMEOUT))
            except TimeoutError:
                raise AssertionError(f"server peer states: {seen}") from None
            assert "failed" not in seen, seen
        ice = server.pc.getTransceivers()[0].receiver.transport.transport
        assert [c.type for c in ice.getRemoteCandidates()] == ["prflx"]
    finally:
        await client.close()
        await server.close()
