"""The one Config object: CLI flags over environment variables over defaults."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as RTCIceServer has it (also sent to browsers in `joined`)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            wire["username"] = self.username
        if self.credential is not None:
            wire["credential"] = self.credential
        return wire


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    # Passed explicitly to every RTCPeerConnection: aiortc queries a public STUN server when
    # given none. Empty by default, which suits a LAN or a host with a public address.
    ice_servers: tuple[IceServer, ...] = ()
    # Addresses the server offers as host candidates. Empty means the host's own (aioice's
    # choice, which never includes loopback); tests set ("127.0.0.1",).
    candidate_addresses: tuple[str, ...] = ()
    # The public address of a server behind 1:1 NAT (mediasoup's announcedIp): written into
    # the server's SDP in place of its host candidates' addresses.
    announced_ip: str | None = None
    # Seconds a peer connection may take to connect before it is given up.
    connect_timeout: float = 20.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        for address in (*self.candidate_addresses, *(filter(None, [self.announced_ip]))):
            ipaddress.ip_address(address)  # raises ValueError with the bad address


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """A JSON list of RTCIceServer objects, or comma-separated stun:/turn: URLs."""
    text = text.strip()
    if not text:
        return ()
    if text.startswith("["):
        servers = []
        for item in json.loads(text):
            urls = item["urls"]
            servers.append(
                IceServer(
                    urls=tuple([urls] if isinstance(urls, str) else urls),
                    username=item.get("username"),
                    credential=item.get("credential"),
                )
            )
        return tuple(servers)
    return tuple(IceServer(urls=(url.strip(),)) for url in text.split(",") if url.strip())


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def config_from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """Build a Config from NETRA_* variables; keyword overrides (from the CLI) win."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    if "NETRA_HOST" in env:
        values["host"] = env["NETRA_HOST"]
    if "NETRA_PORT" in env:
        values["port"] = int(env["NETRA_PORT"])
    if "NETRA_ICE_SERVERS" in env:
        values["ice_servers"] = parse_ice_servers(env["NETRA_ICE_SERVERS"])
    if "NETRA_CANDIDATE_ADDRESSES" in env:
        values["candidate_addresses"] = _split(env["NETRA_CANDIDATE_ADDRESSES"])
    if env.get("NETRA_ANNOUNCED_IP"):
        values["announced_ip"] = env["NETRA_ANNOUNCED_IP"]
    if "NETRA_CONNECT_TIMEOUT" in env:
        values["connect_timeout"] = float(env["NETRA_CONNECT_TIMEOUT"])
    if "NETRA_LOG_LEVEL" in env:
        values["log_level"] = env["NETRA_LOG_LEVEL"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)  # type: ignore[arg-type]
