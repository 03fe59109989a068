import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netra.errors import ProtocolError
from netra.signaling import messages as m


def parse_error(raw: str | bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        m.parse(raw)
    return info.value.code


def test_a_join_parses_into_a_typed_message():
    message = m.parse('{"type":"join","roomId":"Room_1-a","role":"viewer","token":"t"}')
    assert isinstance(message, m.Join)
    assert (message.roomId, message.role, message.token) == ("Room_1-a", "viewer", "t")


def test_unknown_extra_fields_are_ignored():
    message = m.parse('{"type":"ping","id":7,"future":"field"}')
    assert message == m.Ping(type="ping", id=7)


def test_end_of_candidates_is_null_or_an_empty_candidate():
    assert m.parse('{"type":"candidate","candidate":null}').is_end_of_candidates
    assert m.parse('{"type":"candidate","candidate":{"candidate":""}}').is_end_of_candidates
    trickled = m.parse(
        '{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host",'
        '"sdpMid":"0","sdpMLineIndex":0}}'
    )
    assert not trickled.is_end_of_candidates


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad-json"),
        ("[1, 2]", "bad-json"),
        ('{"roomId": "a"}', "bad-json"),
        ('{"type": 5}', "bad-json"),
        (b'{"type":"ping"}', "bad-json"),
        ('{"type": "subscribe"}', "unknown-type"),
        ('{"type":"join","roomId":"a b","role":"viewer"}', "invalid-message"),
        ('{"type":"join","roomId":"","role":"viewer"}', "invalid-message"),
        ('{"type":"join","roomId":"' + "a" * 65 + '","role":"viewer"}', "invalid-message"),
        ('{"type":"join","roomId":"a","role":"admin"}', "invalid-message"),
        ('{"type":"join","role":"viewer"}', "invalid-message"),
        ('{"type":"offer"}', "invalid-message"),
        ('{"type":"offer","sdp":""}', "invalid-message"),
        ('{"type":"offer","sdp":5}', "invalid-message"),
        ('{"type":"candidate"}', "invalid-message"),
        ('{"type":"candidate","candidate":{"candidate":"x","sdpMLineIndex":"0"}}',
         "invalid-message"),
        ('{"type":"leave","roomId":"no/slash"}', "invalid-message"),
        ('{"type":"ping","id":true}', "invalid-message"),
        ("[" * 100_000, "too-large"),
        ('{"type":"offer","sdp":"' + "v" * 70_000 + '"}', "too-large"),
        ("[" * 50_000 + "]" * 50_000, "too-large"),
        ("[" * 30_000 + "]" * 30_000, "bad-json"),
    ],
)
def test_malformed_messages_get_a_stable_error_code(raw, code):
    assert parse_error(raw) == code


def test_an_oversized_sdp_under_the_frame_limit_is_invalid():
    raw = json.dumps({"type": "offer", "sdp": "v" * (m.MAX_SDP_CHARS + 1)})
    assert parse_error(raw) == "invalid-message"


def test_the_error_ref_is_the_offending_type_when_there_is_one():
    assert m.peek_type('{"type":"offer"}') == "offer"
    assert m.peek_type("garbage") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(list(m._BY_TYPE) + ["x", ""])},
    optional={
        "roomId": json_values | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        "role": st.sampled_from(["streamer", "viewer", "x"]) | json_values,
        "sdp": json_values,
        "candidate": json_values,
        "id": json_values,
        "token": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, message_like, st.dictionaries(st.text(), json_values)))
def test_any_json_yields_a_message_or_a_typed_error(value):
    try:
        message = m.parse(json.dumps(value))
    except ProtocolError as exc:
        assert exc.code in {"bad-json", "unknown-type", "invalid-message", "too-large"}
    else:
        assert message.type == value["type"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=50))
def test_any_frame_yields_a_message_or_a_typed_error(raw):
    try:
        m.parse(raw)
    except ProtocolError as exc:
        assert exc.code in {"bad-json", "unknown-type", "invalid-message", "too-large"}
