import secrets
from collections.abc import AsyncIterator

import aioice.ice
import aiortc.codecs
import aiortc.rtcpeerconnection
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from netra.media import aiortc_private
from netra.media.codecs import (
    H264_PACKETIZATION_MODES,
    H264_PROFILE_LEVEL_IDS,
    forwardable,
    h264_variant,
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    keyframe_detector,
)
from netra.media.peer import Peer


def test_vp8_keyframe_start_is_recognised_with_and_without_extensions():
    assert is_vp8_keyframe_start(bytes([0x10, 0x00]))  # S=1, PID=0, P=0
    assert not is_vp8_keyframe_start(bytes([0x10, 0x01]))  # interframe
    assert not is_vp8_keyframe_start(bytes([0x00, 0x00]))  # not a partition start
    # X=1, I=1 with a 15-bit picture id, then the payload header (keyframe)
    assert is_vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not is_vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x01]))
    # X=1, I=1 (7-bit), L=1, T=1
    assert is_vp8_keyframe_start(bytes([0x90, 0xE0, 0x05, 0x01, 0x20, 0x9C]))
    assert not is_vp8_keyframe_start(b"")
    assert not is_vp8_keyframe_start(bytes([0x90, 0x80]))


def test_h264_keyframe_start_is_recognised_in_every_packetization():
    assert is_h264_keyframe_start(bytes([0x65, 0x88]))  # IDR slice
    assert is_h264_keyframe_start(bytes([0x67, 0x42]))  # SPS
    assert not is_h264_keyframe_start(bytes([0x41, 0x9A]))  # non-IDR slice
    stap = bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])
    assert is_h264_keyframe_start(stap)
    assert not is_h264_keyframe_start(bytes([0x18, 0x00, 0x02, 0x41, 0x9A]))
    assert is_h264_keyframe_start(bytes([0x7C, 0x85, 0x00]))  # FU-A start of IDR
    assert not is_h264_keyframe_start(bytes([0x7C, 0x45, 0x00]))  # FU-A end of IDR
    assert not is_h264_keyframe_start(bytes([0x18, 0xFF, 0xFF]))  # truncated STAP-A


def test_audio_has_no_keyframes():
    assert keyframe_detector("audio/opus") is None
    assert keyframe_detector("video/VP8") is is_vp8_keyframe_start


def test_forwardable_codecs_are_vp8_h264_and_opus_in_any_case():
    assert forwardable("video/VP8") and forwardable("video/H264") and forwardable("audio/opus")
    assert forwardable("VIDEO/h264")
    assert not forwardable("video/VP9") and not forwardable("video/AV1")
    assert not forwardable("audio/PCMU") and not forwardable("video/rtx")


# --- H.264 as real encoders offer it --------------------------------------------------------


def obs_offer(profile_level_id: str, packetization_mode: str) -> str:
    """What OBS's WHIP output (libdatachannel) posts: Opus PT 111 mid 0, H.264 PT 96 mid 1,
    one SSRC each, no candidates (OBS 30.2+)."""
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    ice = f"a=ice-ufrag:{secrets.token_hex(4)}\r\na=ice-pwd:{secrets.token_hex(12)}"
    common = f"c=IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=setup:actpass\r\n{ice}\r\na=sendonly"
    return (
        "v=0\r\no=rtc 3536229917 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=group:BUNDLE 0 1\r\na=msid-semantic:WMS *\r\n"
        f"a=fingerprint:sha-256 {fingerprint}\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        f"{common}\r\na=mid:0\r\n"
        "a=ssrc:1001 cname:obs\r\na=ssrc:1001 msid:obs obs-audio\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        f"{common}\r\na=mid:1\r\n"
        "a=ssrc:2002 cname:obs\r\na=ssrc:2002 msid:obs obs-video\r\n"
        "a=rtpmap:96 H264/90000\r\n"
        "a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\n"
        f"a=fmtp:96 profile-level-id={profile_level_id};packetization-mode={packetization_mode};"
        "level-asymmetry-allowed=1\r\n"
    )


def video_codecs(sdp: str) -> list[tuple[int | None, str, tuple[str, str]]]:
    (video,) = [m for m in SessionDescription.parse(sdp).media if m.kind == "video"]
    return [
        (c.payloadType, c.mimeType, h264_variant(c.parameters))
        for c in video.rtp.codecs
        if c.mimeType.lower() == "video/h264"
    ]


def at_level(sdp: str, level: str) -> str:
    """The same SDP with every H.264 level replaced, as a browser answers with the level it
    decodes (RFC 6184 level-asymmetry-allowed)."""
    lines = []
    for line in sdp.split("\r\n"):
        if "profile-level-id=" in line:
            head, tail = line.split("profile-level-id=", 1)
            line = f"{head}profile-level-id={tail[:4]}{level}{tail[6:]}"
        lines.append(line)
    return "\r\n".join(lines)


@pytest.fixture
async def h264_profiles(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Peer]]:
    """accept_h264_profiles() for this test only; yields a list whose Peers are closed."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    monkeypatch.setitem(aiortc.codecs.CODECS, "video", list(aiortc.codecs.CODECS["video"]))
    for name in ("find_common_codecs", "filter_preferred_codecs"):
        monkeypatch.setattr(aiortc.rtcpeerconnection, name, getattr(aiortc.rtcpeerconnection, name))
    aiortc_private.accept_h264_profiles()
    peers: list[Peer] = []
    yield peers
    for peer in peers:
        await peer.close()


def new_peer(peers: list[Peer]) -> Peer:
    peer = Peer(ice_servers=[], connect_timeout=20, announced_ip=None, on_state=lambda *_: None)
    peers.append(peer)
    return peer


@pytest.mark.parametrize("mode", H264_PACKETIZATION_MODES, ids=lambda m: f"mode{m}")
@pytest.mark.parametrize("profile_level_id", H264_PROFILE_LEVEL_IDS)
async def test_an_obs_style_h264_offer_is_answered_and_forwarded_as_offered(
    h264_profiles, profile_level_id, mode
):
    variant = (profile_level_id, mode)
    publisher = new_peer(h264_profiles)
    answer = await publisher.accept_offer(obs_offer(profile_level_id, mode))

    assert video_codecs(answer) == [(96, "video/H264", variant)]
    (video,) = [p for p in publisher.publications if p.kind == "video"]
    assert video.codec.payloadType == 96 and h264_variant(video.codec.parameters) == variant

    # A viewer is offered exactly that codec first (then, for a profile above baseline, the
    # constrained-baseline label browsers all take), and an aiortc viewer answers with it.
    server_side = new_peer(h264_profiles)
    offer = await server_side.offer([video])
    fallback = [] if profile_level_id.startswith("42") else [("video/H264", ("42e01f", mode))]
    assert [codec[1:] for codec in video_codecs(offer)] == [("video/H264", variant), *fallback]
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await viewer.setLocalDescription(await viewer.createAnswer())
        viewer_answer = viewer.localDescription.sdp
    finally:
        await viewer.close()
    assert video_codecs(viewer_answer)[0][1:] == ("video/H264", variant)
    await server_side.accept_answer(viewer_answer)
    (transceiver,) = server_side.pc.getTransceivers()
    negotiated = aiortc_private.negotiated_codecs(transceiver)
    assert h264_variant(negotiated[0].parameters) == variant

    # A browser answers with its own level of the same profile: still the codec offered.
    browser_side = new_peer(h264_profiles)
    await browser_side.offer([video])
    await browser_side.accept_answer(at_level(viewer_answer, "28"))
    (transceiver,) = browser_side.pc.getTransceivers()
    negotiated = aiortc_private.negotiated_codecs(transceiver)
    assert h264_variant(negotiated[0].parameters) == variant


async def test_an_h264_level_not_listed_is_answered_with_the_listed_level_of_its_profile(
    h264_profiles,
):
    publisher = new_peer(h264_profiles)
    answer = await publisher.accept_offer(obs_offer("640028", "1"))  # High 4.0 (1080p)
    assert video_codecs(answer) == [(96, "video/H264", ("64001f", "1"))]


async def test_accepting_h264_profiles_twice_adds_nothing(h264_profiles):
    before = list(aiortc.codecs.CODECS["video"])
    aiortc_private.accept_h264_profiles()
    assert aiortc.codecs.CODECS["video"] == before
    h264 = [h264_variant(c.parameters) for c in before if c.mimeType == "video/H264"]
    assert (
        len(h264) == len(set(h264)) == len(H264_PROFILE_LEVEL_IDS) * len(H264_PACKETIZATION_MODES)
    )
    payload_types = [c.payloadType for c in before]
    assert len(payload_types) == len(set(payload_types)) and max(payload_types) <= 127
