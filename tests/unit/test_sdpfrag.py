"""Trickle ICE fragments (RFC 8840) as WHIP/WHEP clients PATCH them, parsed without I/O."""

import pytest

from netra.errors import ProtocolError
from netra.http.sdpfrag import (
    MAX_FRAGMENT_CHARS,
    parse_fragment,
    session_ufrag,
    transport_mids,
)

HOST = "candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host"
SRFLX = "candidate:2 1 udp 1694498815 198.51.100.7 61000 typ srflx raddr 0.0.0.0 rport 0"


def lines(*items: str) -> str:
    return "\r\n".join(items) + "\r\n"


def test_a_fragment_gives_its_credentials_its_candidates_by_mid_and_end_of_candidates() -> None:
    # RFC 9725 §4.3.2's example, trimmed.
    fragment = parse_fragment(
        lines("a=ice-ufrag:EsAw", "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1",
              "m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=mid:0", f"a={HOST}",
              "m=video 9 UDP/TLS/RTP/SAVPF 0", "a=mid:1", f"a={SRFLX}",
              "a=end-of-candidates")
    )  # fmt: skip

    assert (fragment.ufrag, fragment.pwd) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1")
    assert fragment.candidates == [("0", HOST), ("1", SRFLX)]
    assert fragment.end_of_candidates


def test_a_candidate_outside_any_media_section_has_no_mid() -> None:
    fragment = parse_fragment(lines(f"a={HOST}"))

    assert fragment.candidates == [(None, HOST)]
    assert fragment.ufrag is None and not fragment.end_of_candidates


def test_blank_lines_and_bare_newlines_are_accepted() -> None:
    fragment = parse_fragment(f"\na=mid:0\n\na={HOST}\n")

    assert fragment.candidates == [("0", HOST)]


def test_a_line_that_is_not_sdp_is_refused() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_fragment(lines("a=mid:0", "hello"))

    assert refused.value.code == "invalid-sdp"


def test_an_oversized_fragment_is_refused() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_fragment(f"a={HOST}\r\n" * (MAX_FRAGMENT_CHARS // len(HOST)))

    assert refused.value.code == "too-large"


def test_the_session_ufrag_is_the_first_in_the_description() -> None:
    offer = lines("v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=ice-ufrag:abcd", "a=mid:0",
                  "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=ice-ufrag:abcd", "a=mid:1")  # fmt: skip

    assert session_ufrag(offer) == "abcd"
    assert session_ufrag("v=0\r\n") is None


def test_bundled_sections_share_the_transport_of_the_first_mid_in_the_group() -> None:
    offer = lines("v=0", "a=group:BUNDLE a v", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:a",
                  "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:v",
                  "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:d")  # fmt: skip

    assert transport_mids(offer) == {"a": "a", "v": "a", "d": "d"}
