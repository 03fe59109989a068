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
