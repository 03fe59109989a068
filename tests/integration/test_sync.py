"""Audio and video stay in sync for a viewer who syncs on the server's sender reports."""

from __future__ import annotations

import statistics

from .conftest import Peers
from .probe import transit_times

MAX_SKEW = 0.020


async def test_a_viewer_computes_less_than_20_ms_of_audio_video_skew(peers: Peers) -> None:
    publisher = await peers.publisher("sync")
    await publisher.join_and_publish()
    viewer = await peers.viewer("sync")
    await viewer.join()
    reception = await viewer.watch(video=10, audio=10)
    audio_ssrc = reception.media_ssrc("audio")
    video_ssrc = reception.media_ssrc("video")

    def reported() -> set[int]:
        return {r.ssrc for r in reception.tap.sender_reports}

    await reception.changes.wait_until(
        lambda: {audio_ssrc, video_ssrc} <= reported(),
        timeout=5.0,
        what=lambda: (
            f"sender reports for audio {audio_ssrc} and video {video_ssrc} "
            f"(got reports for {reported()})"
        ),
    )
    await reception.wait_more_frames(video=45, audio=75, timeout=5.0)  # 1.5 s more

    transit = transit_times(
        reception.tap.rtp, reception.tap.sender_reports, reception.payload_types
    )
    assert len(transit.get("audio", [])) >= 30 and len(transit.get("video", [])) >= 30, {
        kind: len(values) for kind, values in transit.items()
    }
    audio = statistics.median(transit["audio"])
    video = statistics.median(transit["video"])
    skew = audio - video
    assert abs(skew) < MAX_SKEW, (
        f"audio arrives {audio * 1000:.1f} ms after capture, video {video * 1000:.1f} ms: "
        f"skew {skew * 1000:.1f} ms (event loop lagged up to {peers.loop_lag * 1000:.0f} ms)"
    )
