from netra.media.forwarder import (
    RetransmitBudget,
    TrackRewrite,
    resync,
    rewrite,
    seq_newer,
    take_retransmit,
    upstream_seq,
    viewer_rtp_timestamp,
)


def state(next_out_seq=1000, ts_offset=5000):
    return TrackRewrite(ssrc=1, payload_type=96, ts_offset=ts_offset, next_out_seq=next_out_seq)


def test_sequence_order_wraps_around():
    assert seq_newer(1, 0)
    assert seq_newer(0, 0xFFFF)
    assert not seq_newer(0xFFFF, 0)
    assert not seq_newer(5, 5)


def test_video_is_dropped_until_a_start_point_then_renumbered_from_the_chosen_start():
    s = state(next_out_seq=1000)
    assert rewrite(s, 40, can_start=False) == -1
    assert rewrite(s, 41, can_start=True) == 1000
    assert viewer_rtp_timestamp(s, 93_000) == 98_000
    assert rewrite(s, 42, can_start=False) == 1001


def test_upstream_gaps_stay_gaps_so_retransmissions_map_back():
    s = state(next_out_seq=10)
    rewrite(s, 100, True)
    assert rewrite(s, 103, False) == 13
    assert rewrite(s, 101, False) == 11  # the publisher's retransmission of a lost packet


def test_packets_from_before_the_start_are_not_forwarded():
    s = state()
    rewrite(s, 500, True)
    assert rewrite(s, 499, False) == -1


def test_sequence_and_timestamp_wrap_around():
    s = state(next_out_seq=0xFFFF, ts_offset=10)
    rewrite(s, 7, True)
    assert rewrite(s, 8, False) == 0
    assert viewer_rtp_timestamp(s, 0xFFFFFFFF) == 9


def test_a_nack_maps_to_the_publishers_packet_only_within_what_was_sent():
    s = state(next_out_seq=2000)
    assert upstream_seq(s, 2000) is None  # nothing sent yet
    rewrite(s, 300, True)
    rewrite(s, 301, False)
    assert upstream_seq(s, 2001) == 301
    assert upstream_seq(s, 2002) is None  # not sent yet
    assert upstream_seq(s, 1999) is None  # before this viewer's start


def test_long_streams_keep_forwarding_across_many_wraps():
    s = state(next_out_seq=0)
    rewrite(s, 0, True)
    for i in range(1, 200_000):
        assert rewrite(s, i & 0xFFFF, False) == i & 0xFFFF


def test_publisher_timestamps_from_sender_reports_map_with_the_same_offset():
    s = state(ts_offset=0xFFFFFFF0)
    assert viewer_rtp_timestamp(s, 0x20) == 0x10


def test_retransmissions_are_bounded_by_a_token_bucket():
    budget = RetransmitBudget(rate=100.0, burst=10.0, tokens=10.0, updated=0.0)
    granted = sum(take_retransmit(budget, now=0.0) for _ in range(1000))
    assert granted == 10  # one huge NACK gets the burst, not a packet per sequence number
    assert not take_retransmit(budget, now=0.005)
    assert take_retransmit(budget, now=0.02)  # refills at `rate` per second
    assert sum(take_retransmit(budget, now=10.0) for _ in range(50)) == 10  # capped at burst


def test_a_resynced_viewer_waits_for_a_start_point_and_its_numbers_run_on_without_a_gap():
    s = state(next_out_seq=50)
    rewrite(s, 10, True)
    assert rewrite(s, 11, False) == 51
    resync(s)
    assert rewrite(s, 40, False) == -1  # lost packets lie behind; wait for a keyframe
    assert rewrite(s, 41, True) == 52
    assert upstream_seq(s, 51) is None  # NACKs from before the resync map to nothing
