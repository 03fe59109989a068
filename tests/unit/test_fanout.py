"""The native fan-out step sends exactly what the Python reference sends.

Each path gets its own SRTP session made from the same key, its own sending socket and its own
loopback receiver; the same packets go through both, and the datagrams that arrive must be
identical byte for byte (SRTP with the same key, SSRC and index encrypts identically), as must
the viewers' state and counters afterwards.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

import pytest
from pylibsrtp import Policy, Session

from netra.media import fanout
from netra.media.aiortc_private import SrtpRoute
from netra.media.fanout import (
    EVENT_BLOCKED,
    EVENT_STARTED,
    NativeFanout,
    NativeViewer,
    PythonViewer,
    ViewerState,
)
from netra.media.forwarder import resync, upstream_seq

PROFILES = {
    "AEAD_AES_256_GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
    "AES128_CM_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
}


def test_the_native_module_is_built_here() -> None:
    # The suite must exercise the native path: a build that silently fell back would not.
    assert fanout.available(), "netra.media._fanout is missing: reinstall with gcc and headers"
    assert fanout.select("auto") == "native"


@dataclass
class Path:
    route: SrtpRoute
    receiver: socket.socket

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.receiver.recv(2048))
            except BlockingIOError:
                return out


def make_path(profile: str) -> Path:
    srtp_profile, key_length = PROFILES[profile]
    key = bytes(range(key_length))
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=srtp_profile)
    policy.allow_repeat_tx = True  # as aiortc's: a packet may be protected again (copies)
    session = Session(policy=policy)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    return Path(SrtpRoute(sender, receiver.getsockname(), session), receiver)


@pytest.fixture(autouse=True)
def default_path() -> Iterator[None]:
    yield
    fanout.select("auto")


@pytest.fixture
def paths() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for path in made:
        path.route.close()
        path.receiver.close()


def state(next_out_seq: int = 65530, ts_offset: int = 0xFFFFFF00) -> ViewerState:
    return ViewerState(ssrc=0x1234ABCD, payload_type=96, ts_offset=ts_offset,
                       next_out_seq=next_out_seq)  # fmt: skip


def template(seq: int, ts: int, payload: bytes) -> bytes:
    """A serialized RTP packet as a Group makes it: SSRC zero, patched per viewer."""
    header = bytes([0x80, 96]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + bytes(4)
    return header + payload


# Upstream packets: (seq, ts, may start), crossing the 16-bit wrap, with a keyframe in the
# middle: video before it is dropped until the keyframe, then everything goes.
def stream() -> list[tuple[int, int, bool]]:
    packets = []
    seq, ts = 65500, 0xFFFFF000
    for index in range(80):
        packets.append((seq, ts, index == 20))
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 3000 * (index % 3 == 2)) & 0xFFFFFFFF
    return packets


def values(viewer_state: object) -> dict[str, int]:
    return {f.name: int(getattr(viewer_state, f.name)) for f in fields(ViewerState)}


@pytest.mark.parametrize("profile", PROFILES)
def test_both_paths_send_identical_datagrams_through_drop_start_and_wrap(
    paths: list[Path], profile: str
) -> None:
    fanout.select("native")
    python_path, native_path = make_path(profile), make_path(profile)
    paths += [python_path, native_path]
    python = PythonViewer(python_path.route, state())
    native = NativeViewer(native_path.route, state())
    try:
        for seq, ts, can_start in stream():
            payload = os.urandom(200 + seq % 900)
            packet = template(seq, ts, payload)
            assert python.forward(packet, seq, ts, can_start) == native.forward(
                packet, seq, ts, can_start
            ), f"different events at upstream seq {seq}"
        sent_by_python, sent_by_native = python_path.received(), native_path.received()
    finally:
        native.close()
    assert len(sent_by_python) == 60  # 20 dropped before the keyframe
    assert sent_by_native == sent_by_python
    assert values(native.state) == values(python.state)
    assert values(python.state) | {"packets": 60, "dropped": 20} == values(python.state)
    out_seqs = [int.from_bytes(p[2:4], "big") for p in sent_by_python]
    assert out_seqs == [(65530 + i) & 0xFFFF for i in range(60)]  # on across the wrap


def test_a_viewer_with_two_copies_gets_every_datagram_twice_on_both_paths(
    paths: list[Path],
) -> None:
    """A pull across a lossy link (netra.config relay_copies): each packet goes out twice, and
    the copies are identical, so the receiver's SRTP replay check drops whichever comes second."""
    fanout.select("native")
    python_path, native_path = make_path("AES128_CM_SHA1_80"), make_path("AES128_CM_SHA1_80")
    paths += [python_path, native_path]
    python = PythonViewer(python_path.route, replace(state(), copies=2))
    native = NativeViewer(native_path.route, replace(state(), copies=2))
    try:
        for seq, ts, can_start in stream():
            packet = template(seq, ts, os.urandom(300))
            python.forward(packet, seq, ts, can_start)
            native.forward(packet, seq, ts, can_start)
        sent_by_python, sent_by_native = python_path.received(), native_path.received()
    finally:
        native.close()
    assert len(sent_by_native) == 120
    assert sent_by_native[0::2] == sent_by_native[1::2]
    assert sent_by_python == sent_by_native
    assert values(native.state) == values(python.state)
    assert native.state.packets == 60  # packets, not datagrams


def test_a_resync_waits_for_the_next_keyframe_on_both_paths(paths: list[Path]) -> None:
    fanout.select("native")
    python_path, native_path = make_path("AEAD_AES_256_GCM"), make_path("AEAD_AES_256_GCM")
    paths += [python_path, native_path]
    python = PythonViewer(python_path.route, state())
    native = NativeViewer(native_path.route, state())
    try:
        packets = stream()
        for index, (seq, ts, can_start) in enumerate(packets):
            if index == 40:  # unrepairable loss: both stop until the next start point
                resync(python.state)
                resync(native.state)
            packet = template(seq, ts, b"x" * 100)
            python.forward(packet, seq, ts, can_start or index == 60)
            native.forward(packet, seq, ts, can_start or index == 60)
        assert native_path.received() == python_path.received()
    finally:
        native.close()
    assert values(native.state) == values(python.state)
    assert native.state.dropped == 20 + 20  # before the first keyframe, and resync to index 60
    # A NACK maps back to upstream the same way on both (the pure function reads either).
    newest = int(native.state.newest_in_seq)
    out = (newest + int(native.state.seq_offset)) & 0xFFFF
    assert upstream_seq(native.state, out) == upstream_seq(python.state, out) == newest


class FakeMember:
    def __init__(self, viewer: NativeViewer) -> None:
        self.viewer: fanout.Viewer | None = viewer
        self.events: list[int] = []

    def on_events(self, events: int) -> None:
        self.events.append(events)


def test_a_group_call_sends_each_viewer_what_its_own_python_path_would(
    paths: list[Path],
) -> None:
    fanout.select("native")
    group = NativeFanout()
    pairs = []
    for index in range(3):
        python_path, native_path = make_path("AEAD_AES_256_GCM"), make_path("AEAD_AES_256_GCM")
        paths += [python_path, native_path]
        start = {"next_out_seq": 1000 * index, "ts_offset": 77 * index}
        member = FakeMember(NativeViewer(native_path.route, state(**start)))
        group.add(member)
        pairs.append((PythonViewer(python_path.route, state(**start)), python_path, member,
                      native_path))  # fmt: skip
    for seq, ts, can_start in stream():
        packet = template(seq, ts, b"y" * 300)
        group.send(packet, seq, ts, can_start)
        for python, *_ in pairs:
            python.forward(packet, seq, ts, can_start)
    for python, python_path, member, native_path in pairs:
        assert native_path.received() == python_path.received()
        assert member.viewer is not None
        assert values(member.viewer.state) == values(python.state)
        assert member.events == [EVENT_STARTED]  # told once, when its stream began
        group.remove(member)
        member.viewer.close()


def test_a_send_that_would_block_is_dropped_counted_and_reported(paths: list[Path]) -> None:
    """A viewer whose socket buffer is full gets nothing queued: the packet is dropped,
    counted as blocked, and the caller told (it resyncs the viewer)."""
    fanout.select("native")
    results = {}
    for name in ("python", "native"):
        path = make_path("AEAD_AES_256_GCM")
        paths.append(path)
        # A datagram socket pair whose reader never reads fills up and then would block.
        full, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        full.setblocking(False)
        full.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        route = SrtpRoute(full, ("127.0.0.1", 9), path.route.session)
        route._sendto = lambda data, _address, sock=full: sock.send(data)  # type: ignore[misc]
        viewer: fanout.Viewer
        if name == "python":
            viewer = PythonViewer(route, state())
        else:
            viewer = NativeViewer(route, state())
            viewer.state.addr_len = 0  # send as on the connected pair
        events = [viewer.forward(template(s, 0, b"z" * 1000), s, 0, True) for s in range(300)]
        results[name] = (values(viewer.state), events)
        viewer.close()
        route.close()
        reader.close()
    python_state, python_events = results["python"]
    native_state, native_events = results["native"]
    assert python_state["blocked"] > 0
    assert python_state["packets"] + python_state["blocked"] == 300
    assert native_state["blocked"] > 0
    assert native_state["packets"] + native_state["blocked"] == 300
    assert all(e & EVENT_BLOCKED for e in native_events[native_state["packets"] :])
    assert all(e & EVENT_BLOCKED for e in python_events[python_state["packets"] :])


def test_python_is_used_when_asked_for() -> None:
    assert fanout.select("python") == "python"
    assert not fanout.native()
    assert fanout.select("auto") == "native"
    with pytest.raises(ValueError):
        fanout.select("fast")
