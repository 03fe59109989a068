import json

import pytest

from netra.config import IceServer, config_from_env, parse_ice_servers


def test_defaults_serve_on_every_interface_at_8080_with_no_ice_servers():
    config = config_from_env({})
    assert (config.host, config.port, config.ice_servers) == ("0.0.0.0", 8080, ())
    assert config.candidate_addresses == ()


def test_environment_sets_everything_and_flags_win():
    env = {
        "NETRA_PORT": "9000",
        "NETRA_ICE_SERVERS": "stun:stun.example.org:3478",
        "NETRA_CANDIDATE_ADDRESSES": "127.0.0.1, ::1",
        "NETRA_ANNOUNCED_IP": "203.0.113.7",
    }
    config = config_from_env(env, port=9100)
    assert config.port == 9100
    assert config.ice_servers == (IceServer(urls=("stun:stun.example.org:3478",)),)
    assert config.candidate_addresses == ("127.0.0.1", "::1")
    assert config.announced_ip == "203.0.113.7"


def test_ice_servers_can_be_a_json_list_with_credentials():
    wire = {"urls": ["turn:t.example:3478"], "username": "u", "credential": "c"}
    servers = parse_ice_servers(json.dumps([wire]))
    assert servers[0].to_wire() == wire


def test_bad_addresses_are_refused():
    with pytest.raises(ValueError):
        config_from_env({"NETRA_ANNOUNCED_IP": "not-an-ip"})
