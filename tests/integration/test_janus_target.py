"""JanusTarget drives a real Janus: one publisher, one viewer that gets video over loopback.

Needs the Debian `janus` package and gcc; without them the test fails (TargetUnavailable says
what to install) rather than skipping, so a missing Janus cannot pass for a working one.
"""

from __future__ import annotations

import asyncio
import threading

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

from netra.bench.janus import JanusTarget

from .conftest import _assert_nothing_left


async def _connected(pc: RTCPeerConnection, timeout: float) -> None:
    """Wait for `connected` on the state-change event; fail at once on failed or closed."""
    changed = asyncio.Event()
    pc.on("connectionstatechange", changed.set)
    async with asyncio.timeout(timeout):
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed"):
                raise AssertionError(f"viewer connection {pc.connectionState}")
            changed.clear()
            await changed.wait()


async def test_viewer_receives_video_through_janus(loopback_candidates: None) -> None:
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    target = JanusTarget()
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sessions = []
    video: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @viewer.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not video.done():
            video.set_result(track)

    prepared = []
    try:
        await target.start(cpu=None)
        assert target.pid > 0
        publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
        publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
        sessions.append(await target.publish(publisher))
        session, answered_at = await target.subscribe(viewer, lambda: prepared.append(True))
        sessions.append(session)
        assert prepared == [True] and answered_at > 0

        await _connected(viewer, 10)
        track = await asyncio.wait_for(video, 10)
        frame = await asyncio.wait_for(track.recv(), 10)  # decoded, so RTP got through
        assert frame is not None
    finally:
        for s in reversed(sessions):  # the viewer first, then the publisher
            await s.close()
            await s.close()  # idempotent
        await viewer.close()
        await publisher.close()
        await target.stop()
    await _assert_nothing_left(tasks_before, threads_before, "after closing janus and the peers")
