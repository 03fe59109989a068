import base64
import json
import stat
import time

import jwt
import pytest

from netra.auth import (
    Authority,
    Claims,
    Grant,
    allows,
    load_or_create_secret,
    mint,
    room_matches,
    secret_for,
)
from netra.config import Config, ConfigError
from netra.errors import NotAuthorised

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256"


def refused(code: str, token: str | None, room: str = "a", grant: Grant = Grant.PUBLISH) -> str:
    with pytest.raises(NotAuthorised) as caught:
        Authority(SECRET).authorize(token, room, grant)
    assert caught.value.code == code, caught.value.message
    assert caught.value.http_status() == {"unauthorized": 401, "forbidden": 403}[code]
    return caught.value.message


def unsigned(payload: dict[str, object], header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


def test_a_minted_token_verifies_with_its_claims():
    token = mint(SECRET, room="team-*", publish=True, subscribe=True, identity="alice", now=1e9)
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert payload == {
        "room": "team-*",
        "grants": ["publish", "subscribe"],
        "sub": "alice",
        "iat": 1_000_000_000,
        "exp": 1_000_003_600,
    }
    token = mint(SECRET, room="team-*", publish=True, subscribe=True, identity="alice", ttl=60)
    claims = Authority(SECRET).authorize(token, "team-a", Grant.SUBSCRIBE)
    assert claims == Claims(
        room="team-*",
        grants=frozenset({Grant.PUBLISH, Grant.SUBSCRIBE}),
        identity="alice",
        expires_at=claims.expires_at,
    )
    assert time.time() < claims.expires_at <= time.time() + 60


@pytest.mark.parametrize(
    ("pattern", "room", "matches"),
    [
        ("team-*", "team-a", True),
        ("team-*", "teams", False),
        ("team-*", "my-team-a", False),
        ("*", "anything_at-all", True),
        ("a", "a", True),
        ("a", "ab", False),
        ("*-live", "news-live", True),
        ("a.b", "axb", False),  # only * is special
    ],
)
def test_room_patterns_match_whole_room_names(pattern, room, matches):
    assert room_matches(pattern, room) is matches


def test_allows_needs_both_the_room_and_the_grant():
    claims = Claims(room="team-*", grants=frozenset({Grant.SUBSCRIBE}), identity=None, expires_at=0)
    assert allows(claims, "team-a", Grant.SUBSCRIBE)
    assert not allows(claims, "team-a", Grant.PUBLISH)
    assert not allows(claims, "other", Grant.SUBSCRIBE)


def test_a_token_for_another_room_is_forbidden_and_says_which():
    message = refused("forbidden", mint(SECRET, room="team-*", publish=True), room="teams")
    assert "'team-*'" in message and "'teams'" in message


def test_a_token_without_the_grant_is_forbidden_and_names_grant_and_room():
    message = refused("forbidden", mint(SECRET, room="a", subscribe=True, admin=True))
    assert "'publish'" in message and "'a'" in message


def test_an_expired_token_is_refused_but_a_few_seconds_of_skew_are_not():
    now = time.time()
    assert "expired" in refused(
        "unauthorized", mint(SECRET, room="a", publish=True, ttl=60, now=now - 120)
    )
    Authority(SECRET).authorize(
        mint(SECRET, room="a", publish=True, ttl=60, now=now - 62), "a", Grant.PUBLISH
    )


def test_a_token_not_yet_valid_is_refused():
    claims = {
        "room": "a",
        "grants": ["publish"],
        "nbf": int(time.time()) + 600,
        "exp": int(time.time()) + 900,
    }
    assert "not yet valid" in refused("unauthorized", jwt.encode(claims, SECRET, algorithm="HS256"))


def test_a_token_signed_with_another_secret_is_refused():
    message = refused("unauthorized", mint(OTHER_SECRET, room="a", publish=True))
    assert "signature" in message


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_a_malformed_token_is_refused(token):
    assert "malformed" in refused("unauthorized", token)


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_refused(token):
    assert refused("unauthorized", token) == "no token"


def test_alg_none_and_other_algorithms_are_refused():
    claims = {"room": "*", "grants": ["publish"], "exp": int(time.time()) + 60}
    assert "HS256" in refused("unauthorized", unsigned(claims, {"alg": "none", "typ": "JWT"}))
    hs512 = jwt.encode(claims, SECRET + SECRET, algorithm="HS512")
    assert "HS256" in refused("unauthorized", hs512)


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"room": "a", "grants": ["publish"]}, "'exp'"),
        ({"grants": ["publish"]}, "'room'"),
        ({"room": "a b", "grants": ["publish"]}, "'room'"),
        ({"room": "a"}, "'grants'"),
        ({"room": "a", "grants": []}, "'grants'"),
        ({"room": "a", "grants": {"publish": True}}, "'grants'"),
        ({"room": "a", "grants": ["publish", "own"]}, "unknown grant"),
    ],
)
def test_a_signed_token_with_bad_claims_is_refused(claims, why):
    if why != "'exp'":
        claims = {**claims, "exp": int(time.time()) + 60}
    assert why in refused("unauthorized", jwt.encode(claims, SECRET, algorithm="HS256"))


def test_mint_refuses_useless_or_unsafe_tokens():
    with pytest.raises(ValueError, match="at least one grant"):
        mint(SECRET, room="a")
    with pytest.raises(ValueError, match="room name"):
        mint(SECRET, room="a?", publish=True)
    with pytest.raises(ValueError, match="32 bytes"):
        mint("short", room="a", publish=True)
    with pytest.raises(ValueError, match="32 bytes"):
        Authority("short")


def test_the_secret_is_made_once_privately_and_then_read_back(tmp_path):
    state_dir = tmp_path / "state" / "netra"
    secret, created = load_or_create_secret(state_dir)
    assert created and len(secret) >= 64
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "secret").stat().st_mode) == 0o600
    assert load_or_create_secret(state_dir) == (secret, False)
    assert [path.name for path in state_dir.iterdir()] == ["secret"]


def test_a_configured_secret_wins_over_the_stored_one(tmp_path):
    configured = Config(auth_secret=OTHER_SECRET, state_dir=tmp_path)
    assert secret_for(configured) == OTHER_SECRET
    assert not (tmp_path / "secret").exists()
    assert secret_for(Config(state_dir=tmp_path)) == load_or_create_secret(tmp_path)[0]


def test_an_unusable_stored_secret_is_one_line(tmp_path):
    (tmp_path / "secret").write_text("short\n")
    with pytest.raises(ConfigError, match="too short; delete it"):
        load_or_create_secret(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot keep a token secret"):
        load_or_create_secret(tmp_path / "file")
