import logging
import os
import re
import time

import pytest

from netra import cli
from netra.auth import Authority, Grant, load_or_create_secret
from netra.errors import NotAuthorised

SECRET = "a-configured-secret-that-is-long-enough"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No NETRA_* from the runner; the state directory is the test's own."""
    for name in list(os.environ):
        if name.startswith("NETRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


def token(capsys, *args: str) -> str:
    cli.main(["token", *args])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # the token and nothing else
    return out.strip()


def fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as caught:
        cli.main(list(args))
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("netra: ") and err.count("\n") == 1, err
    return err


def test_a_printed_token_verifies_with_the_secret_serve_would_use(capsys, tmp_path):
    printed = token(capsys, "--room", "team-*", "--publish", "--identity", "alice")
    secret, created = load_or_create_secret(tmp_path / "netra")
    assert not created
    claims = Authority(secret).authorize(printed, "team-a", Grant.PUBLISH)
    assert claims.identity == "alice"
    with pytest.raises(NotAuthorised):
        Authority(secret).authorize(printed, "team-a", Grant.SUBSCRIBE)


def test_a_configured_secret_signs_the_token(capsys, monkeypatch):
    monkeypatch.setenv("NETRA_AUTH_SECRET", SECRET)
    printed = token(capsys, "--room", "a", "--subscribe", "--ttl", "90s")
    claims = Authority(SECRET).authorize(printed, "a", Grant.SUBSCRIBE)
    assert claims.expires_at <= time.time() + 90
    printed = token(capsys, "--admin", "--auth-secret", SECRET[::-1])
    assert Authority(SECRET[::-1]).authorize(printed, "any-room", Grant.ADMIN)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("3600", 3600), ("1.5h", 5400)],
)
def test_ttl_takes_a_unit(text, seconds):
    assert cli.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1w", "h", "-5m", "1 h 2"])
def test_ttl_refuses_anything_else(text):
    assert cli.parse_ttl(text) is None


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--room", "a"], "at least one grant"),
        (["--publish"], "--room is required"),
        (["--admin", "--subscribe"], "--room is required"),
        (["--room", "a", "--publish", "--ttl", "soon"], "bad --ttl"),
        (["--room", "a b", "--publish"], "not a room name"),
        (["--room", "a", "--publish", "--auth-secret", "short"], "--auth-secret"),
    ],
)
def test_a_token_that_cannot_be_made_is_one_line_and_exit_2(capsys, args, why):
    assert why in fails(capsys, "token", *args)


def test_serve_without_a_secret_logs_a_quick_start_link_that_can_publish_anywhere(
    monkeypatch, caplog, tmp_path
):
    ran = []
    monkeypatch.setattr("netra.app.run", lambda config, *, secret: ran.append(secret))
    with caplog.at_level(logging.INFO, logger="netra"):
        cli.main(["serve", "--port", "8123"])
    secret, _ = load_or_create_secret(tmp_path / "netra")
    assert ran == [secret]
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == f"Netra stored a new token secret in {tmp_path / 'netra' / 'secret'}"
    link = re.fullmatch(r"Netra on http://localhost:8123/\?token=(\S+)", lines[1])
    assert link is not None, lines
    claims = Authority(secret).authorize(link[1], "any-room", Grant.PUBLISH)
    assert claims.expires_at > time.time() + 29 * 86400

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netra"):
        cli.main(["serve", "--port", "8123"])
    assert [r.getMessage().split("?")[0] for r in caplog.records] == [
        "Netra on http://localhost:8123/"
    ]


def test_serve_with_a_configured_secret_prints_no_token(monkeypatch, caplog, tmp_path):
    ran = []
    monkeypatch.setattr("netra.app.run", lambda config, *, secret: ran.append(secret))
    monkeypatch.setenv("NETRA_AUTH_SECRET", SECRET)
    with caplog.at_level(logging.INFO, logger="netra"):
        cli.main(["serve", "--public-url", "https://live.example.org/"])
    assert ran == [SECRET]
    assert [r.getMessage() for r in caplog.records] == ["Netra on https://live.example.org"]
    assert not (tmp_path / "netra").exists()
