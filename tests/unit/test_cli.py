import io
import json
import logging
import os
import re
import time

import pytest

from netra import cli
from netra.auth import Authority, Grant, load_or_create_secret
from netra.errors import NotAuthorised
from netra.observability.log import TEXT_FORMAT, JsonFormatter, ParticipantLog

SECRET = "a-configured-secret-that-is-long-enough"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No NETRA_* from the runner; the state directory is the test's own; `serve` sets the
    aioice logger's level, which is put back for the tests that follow."""
    for name in list(os.environ):
        if name.startswith("NETRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    aioice = logging.getLogger("aioice")
    level = aioice.level
    yield
    aioice.setLevel(level)


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


@pytest.mark.parametrize(
    ("flag", "level"), [([], logging.WARNING), (["--log-level", "DEBUG"], logging.NOTSET)]
)
def test_serve_keeps_aioices_per_check_lines_out_of_the_log_unless_debugging(
    monkeypatch, flag, level
):
    monkeypatch.setattr("netra.app.run", lambda config, *, secret: None)
    cli.main(["serve", "--auth-secret", SECRET, *flag])
    assert logging.getLogger("aioice").level == level  # NOTSET: as the root logger, DEBUG


def logged(formatter: logging.Formatter, name: str) -> tuple[logging.Logger, io.StringIO]:
    """A logger of the test's own (not registered with logging: nothing left behind) that
    writes to a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    log = logging.Logger(name, logging.INFO)
    log.addHandler(handler)
    return log, out


def test_json_log_lines_carry_room_client_and_role_as_fields():
    log, out = logged(JsonFormatter(), "netra.test-json")
    participant = ParticipantLog(log, "c0ffee")
    participant.info("connected from %s", "127.0.0.1")
    participant.bind("studio", "viewer")
    participant.info("joined via %s", "ws")
    log.warning("no one's in particular")
    try:
        raise ValueError("boom")
    except ValueError:
        participant.exception("internal error")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["message"], line.get("room"), line.get("role")) for line in lines] == [
        ("connected from 127.0.0.1", "-", "-"),
        ("joined via ws", "studio", "viewer"),
        ("no one's in particular", None, None),
        ("internal error", "studio", "viewer"),
    ]
    assert {line.get("client") for line in lines} == {"c0ffee", None}
    assert [line["level"] for line in lines] == ["INFO", "INFO", "WARNING", "ERROR"]
    assert {line["logger"] for line in lines} == {"netra.test-json"}
    assert lines[0]["time"].endswith("+00:00")
    assert "ValueError: boom" in lines[3]["exception"]  # the traceback, inside its one line


def test_text_log_lines_keep_the_room_client_role_prefix():
    log, out = logged(logging.Formatter(TEXT_FORMAT), "netra.test-text")
    participant = ParticipantLog(log, "c0ffee")
    participant.bind("studio", "streamer")
    participant.info("stream started")
    assert out.getvalue().endswith(
        " INFO netra.test-text: room=studio client=c0ffee role=streamer stream started\n"
    )
