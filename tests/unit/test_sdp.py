from netra.media.sdp import add_start_bitrate, announce_address

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 127.0.0.1",
        "a=rtpmap:111 opus/48000/2",
        "a=candidate:abc 1 udp 2130706431 10.0.0.5 50000 typ host",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98",
        "c=IN IP4 10.0.0.5",
        "a=rtpmap:97 VP8/90000",
        "a=rtpmap:98 rtx/90000",
        "a=fmtp:98 apt=97",
        "a=candidate:def 1 udp 1694498815 1.2.3.4 50001 typ srflx raddr 10.0.0.5 rport 50000",
        "",
    ]
)


def test_the_start_bitrate_hint_is_added_to_video_codecs_only():
    out = add_start_bitrate(ANSWER)
    assert "a=fmtp:97 x-google-start-bitrate=2500;x-google-min-bitrate=300" in out
    assert "a=fmtp:98 apt=97\r\n" in out  # RTX untouched
    assert out.count("x-google-start-bitrate") == 1
    assert out.endswith("\r\n")


def test_the_hint_extends_an_existing_fmtp_line():
    sdp = ANSWER.replace(
        "a=rtpmap:97 VP8/90000", "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1"
    )
    out = add_start_bitrate(sdp)
    assert "a=fmtp:97 packetization-mode=1;x-google-start-bitrate=2500" in out
    assert out.count("x-google-start-bitrate") == 1


def test_the_announced_address_replaces_host_candidates_and_connection_lines():
    out = announce_address(ANSWER, "203.0.113.7")
    assert "a=candidate:abc 1 udp 2130706431 203.0.113.7 50000 typ host" in out
    assert "1.2.3.4 50001 typ srflx" in out  # server-reflexive left alone
    assert "10.0.0.5 50000 typ host" not in out
    assert "c=IN IP4 203.0.113.7" in out
