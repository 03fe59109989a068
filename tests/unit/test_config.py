import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from netra.config import Config, ConfigError, IceServer, load_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """The runner's own NETRA_* variables must not reach these tests."""
    for name in list(os.environ):
        if name.startswith("NETRA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def bad_setting(**flags) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(**flags)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_serve_on_every_interface_at_8080_with_no_ice_servers(tmp_path):
    config = Config()
    assert (config.host, config.port, config.ice_servers) == ("0.0.0.0", 8080, ())
    assert (config.candidate_addresses, config.announced_ip) == ((), None)
    assert (config.connect_timeout, config.log_level, config.auth_secret) == (20.0, "INFO", None)
    assert config.state_dir == tmp_path / "state" / "netra"
    assert (config.viewers_need_token, config.whip_strict) == (False, False)
    assert (config.max_sessions, config.http_rate, config.http_burst) == (500, 20.0, 40)
    assert (config.public_url, config.base_url) == (None, "http://localhost:8080")


def test_state_dir_falls_back_to_local_state_when_xdg_state_home_is_unset_or_relative(
    monkeypatch,
):
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    assert Config().state_dir == Path.home() / ".local" / "state" / "netra"


def test_tests_build_a_config_with_keywords_and_tuples_and_it_is_frozen():
    config = Config(host="127.0.0.1", port=0, candidate_addresses=("127.0.0.1",))
    assert (config.host, config.port, config.candidate_addresses) == (
        "127.0.0.1",
        0,
        ("127.0.0.1",),
    )
    servers = (IceServer(urls=("stun:stun.example.org",)),)
    assert Config(ice_servers=servers).ice_servers == servers
    with pytest.raises(ValidationError):
        config.port = 1  # type: ignore[misc]


def test_environment_sets_everything(monkeypatch, tmp_path):
    env = {
        "NETRA_HOST": "127.0.0.1",
        "NETRA_PORT": "9000",
        "NETRA_ICE_SERVERS": "stun:stun.example.org:3478, stuns:s.example.org",
        "NETRA_CANDIDATE_ADDRESSES": "127.0.0.1, ::1",
        "NETRA_ANNOUNCED_IP": "203.0.113.7",
        "NETRA_CONNECT_TIMEOUT": "5",
        "NETRA_LOG_LEVEL": "debug",
        "NETRA_AUTH_SECRET": "s" * 32,
        "NETRA_STATE_DIR": str(tmp_path / "netra"),
        "NETRA_VIEWERS_NEED_TOKEN": "true",
        "NETRA_WHIP_STRICT": "1",
        "NETRA_MAX_SESSIONS": "10",
        "NETRA_HTTP_RATE": "2.5",
        "NETRA_HTTP_BURST": "5",
        "NETRA_PUBLIC_URL": "https://live.example.org/",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config()
    assert config.ice_servers == (
        IceServer(urls=("stun:stun.example.org:3478",)),
        IceServer(urls=("stuns:s.example.org",)),
    )
    assert (config.host, config.port, config.candidate_addresses) == (
        "127.0.0.1",
        9000,
        ("127.0.0.1", "::1"),
    )
    assert (config.announced_ip, config.connect_timeout, config.log_level) == (
        "203.0.113.7",
        5.0,
        "DEBUG",
    )
    assert (config.auth_secret, config.state_dir) == ("s" * 32, tmp_path / "netra")
    assert (config.viewers_need_token, config.whip_strict) == (True, True)
    assert (config.max_sessions, config.http_rate, config.http_burst) == (10, 2.5, 5)
    assert config.base_url == "https://live.example.org"


def test_flags_win_over_the_environment_and_unset_flags_leave_it(monkeypatch):
    monkeypatch.setenv("NETRA_PORT", "9000")
    monkeypatch.setenv("NETRA_HOST", "127.0.0.1")
    monkeypatch.setenv("NETRA_WHIP_STRICT", "true")
    config = load_config(port="9100", host=None, whip_strict=False)
    assert (config.port, config.host, config.whip_strict) == (9100, "127.0.0.1", False)


def test_empty_variables_count_as_unset(monkeypatch):
    monkeypatch.setenv("NETRA_ICE_SERVERS", "")
    monkeypatch.setenv("NETRA_ANNOUNCED_IP", "")
    assert (Config().ice_servers, Config().announced_ip) == ((), None)


def test_ice_servers_can_be_a_json_list_with_credentials(monkeypatch):
    wire = {"urls": ["turn:t.example:3478"], "username": "u", "credential": "c"}
    monkeypatch.setenv("NETRA_ICE_SERVERS", json.dumps([wire, {"urls": "stun:s.example"}]))
    servers = Config().ice_servers
    assert [server.to_wire() for server in servers] == [wire, {"urls": ["stun:s.example"]}]


def test_ice_servers_can_be_a_json_list_of_urls(monkeypatch):
    monkeypatch.setenv("NETRA_ICE_SERVERS", '["stun:a.example", "stun:b.example"]')
    assert Config().ice_servers == (IceServer(("stun:a.example",)), IceServer(("stun:b.example",)))


def test_each_ice_server_flag_takes_what_the_variable_takes():
    turn = {"urls": "turn:t.example", "username": "u", "credential": "c"}
    config = load_config(ice_servers=["stun:a.example,stun:b.example", json.dumps(turn)])
    assert [server.urls for server in config.ice_servers] == [
        ("stun:a.example",),
        ("stun:b.example",),
        ("turn:t.example",),
    ]


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("ICE_SERVERS", '[{"url": "stun:x"}]', 'item 0 has no "urls" (an RTCIceServer is {"urls"'),
        ("ICE_SERVERS", "[stun:x]", "is not JSON"),
        ("ICE_SERVERS", '["stun:x", 3]', "item 1 is 3"),
        ("ICE_SERVERS", '[{"urls": []}]', '"urls" must be a URL or a non-empty list'),
        ("ICE_SERVERS", '[{"urls": "stun:x", "usename": "u"}]', "unknown key 'usename'"),
        ("ICE_SERVERS", "stun:ok.example,http://x.example", "'http://x.example' is not a STUN"),
        ("ICE_SERVERS", '["stun:"]', "'stun:' is not a STUN or TURN URL"),
        ("ICE_SERVERS", "turn:t.example", "needs a username and credential"),
        ("CANDIDATE_ADDRESSES", "127.0.0.1,localhost", "'localhost' is not an IP address"),
        ("ANNOUNCED_IP", "203.0.113.300", "'203.0.113.300' is not an IP address"),
        ("PORT", "70000", "less than or equal to 65535"),
        ("PORT", "http", "valid integer"),
        ("CONNECT_TIMEOUT", "0", "greater than 0"),
        ("LOG_LEVEL", "LOUD", "'LOUD' is not a log level"),
        ("AUTH_SECRET", "too-short", "is only 9 bytes; an HS256 secret needs at least 32"),
        ("VIEWERS_NEED_TOKEN", "maybe", "valid boolean"),
        ("MAX_SESSIONS", "0", "greater than or equal to 1"),
        ("HTTP_RATE", "-1", "greater than 0"),
        ("HTTP_BURST", "0", "greater than or equal to 1"),
        ("PUBLIC_URL", "live.example.org", "is not an http:// or https:// URL"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(monkeypatch, name, value, why):
    monkeypatch.setenv(f"NETRA_{name}", value)
    message = bad_setting()
    assert message.startswith(f"bad setting NETRA_{name}: ")
    assert why in message


def test_a_bad_flag_is_named_as_the_flag():
    assert bad_setting(port="70000").startswith("bad setting --port: ")
    assert bad_setting(ice_servers=["http://x"]).startswith("bad setting --ice-server: ")
    assert bad_setting(candidate_addresses=["x"]).startswith("bad setting --candidate-address: ")


def test_a_bad_secret_is_never_echoed(monkeypatch):
    monkeypatch.setenv("NETRA_AUTH_SECRET", "hunter2")
    assert "hunter2" not in bad_setting()


def test_serve_with_bad_ice_servers_exits_2_with_one_line_and_no_traceback(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("NETRA_")}
    env |= {"NETRA_ICE_SERVERS": '[{"url": "stun:x"}]', "XDG_STATE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "netra", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("netra: bad setting NETRA_ICE_SERVERS: "), lines[0]
    assert not (tmp_path / "netra").exists()  # failed before making a secret
