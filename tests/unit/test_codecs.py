from netra.media.codecs import is_h264_keyframe_start, is_vp8_keyframe_start, keyframe_detector


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
