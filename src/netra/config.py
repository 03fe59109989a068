"""The one Config object: CLI flags over NETRA_* environment variables over defaults.

`Config` is a pydantic-settings model, so it reads the environment whenever it is built
(`Config()` in a clean environment is all defaults, and there is no .env file). Each field
carries a `Flag`: cli.py builds the `serve` flags from them, so a setting, its variable and
its flag are declared once. `load_config(**flags)` is the CLI's door: a bad value of any
setting becomes one `ConfigError` line naming the flag or variable it came from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "NETRA_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
# HS256 keys shorter than the hash are weak (RFC 7518 §3.2), and PyJWT warns about them.
MIN_SECRET_BYTES = 32
_ICE_SERVER_SHAPE = '(an RTCIceServer is {"urls": "stun:host:3478"})'


class ConfigError(ValueError):
    """A bad setting; the message is one line naming it, fit for `netra: <message>`."""


@dataclass(frozen=True)
class Flag:
    """How a Config field appears on the command line (`--name`, default from the field)."""

    help: str
    metavar: str | None = None
    name: str | None = None  # when not the field's name, e.g. a repeatable singular
    default: str | None = None  # for --help, when the field's default says too little


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


def default_state_dir() -> Path:
    # XDG Base Directory spec: a relative $XDG_STATE_HOME is invalid and must be ignored.
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "netra"


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid"
    )

    host: Annotated[str, Flag("address to listen on", "ADDR")] = "0.0.0.0"
    # 0 asks the OS for a free port (the tests do).
    port: Annotated[int, Field(ge=0, le=65535), Flag("HTTP port")] = 8080
    # Passed explicitly to every RTCPeerConnection: aiortc queries a public STUN server when
    # given none. Empty by default, which suits a LAN or a host with a public address.
    ice_servers: Annotated[
        tuple[IceServer, ...],
        NoDecode,  # a comma list or JSON: parsed by _ice_servers, not by pydantic-settings
        Flag(
            "STUN/TURN URL (or a JSON RTCIceServer) for every peer connection; repeatable",
            "URL",
            name="ice-server",
        ),
    ] = ()
    # Addresses the server offers as host candidates. Empty means the host's own (aioice's
    # choice, which never includes loopback); tests set ("127.0.0.1",).
    candidate_addresses: Annotated[
        tuple[str, ...],
        NoDecode,  # a comma list
        Flag(
            "address to offer as ICE host candidate; repeatable",
            "IP",
            name="candidate-address",
            default="the host's own",
        ),
    ] = ()
    # The public address of a server behind 1:1 NAT (mediasoup's announcedIp): written into
    # the server's SDP in place of its host candidates' addresses.
    announced_ip: Annotated[
        str | None, Flag("public address of a server behind 1:1 NAT, written into its SDP", "IP")
    ] = None
    # aioice binds each peer connection's candidate to a port of its own: a range, for a
    # firewall rule or a container's port mapping (docs/scale-out.md).
    udp_ports: Annotated[
        tuple[int, int] | None,
        NoDecode,
        Flag("UDP ports for media, LOW-HIGH (or one port: one peer connection at a time)",
             "RANGE", default="any free port"),
    ] = None
    connect_timeout: Annotated[
        float, Field(gt=0), Flag("seconds a peer connection may take to connect", "SECONDS")
    ] = 20.0
    log_level: Annotated[str, Flag("DEBUG, INFO, WARNING, ERROR or CRITICAL", "LEVEL")] = "INFO"
    auth_secret: Annotated[
        str | None,
        Flag(
            f"HS256 secret that signs access tokens, at least {MIN_SECRET_BYTES} bytes",
            "SECRET",
            default="one made once and kept in the state directory",
        ),
    ] = None
    state_dir: Annotated[
        Path,
        Flag("where Netra keeps its generated secret", "DIR", default="$XDG_STATE_HOME/netra"),
    ] = Field(default_factory=default_state_dir)
    viewers_need_token: Annotated[bool, Flag("viewers must present a subscribe token")] = False
    # RFC 9725 §4.3.2: PATCH carries If-Match with the session's ETag; off, it may be omitted.
    whip_strict: Annotated[bool, Flag("enforce RFC 9725 If-Match rules on WHIP/WHEP PATCH")] = False
    max_sessions: Annotated[
        int, Field(ge=1), Flag("WHIP+WHEP sessions past which POST answers 503", "N")
    ] = 500
    # One token bucket for WHIP/WHEP POST, PATCH and DELETE; past it they answer 429.
    http_rate: Annotated[
        float, Field(gt=0), Flag("WHIP/WHEP requests per second before 429", "PER_SECOND")
    ] = 20.0
    http_burst: Annotated[int, Field(ge=1), Flag("WHIP/WHEP requests allowed in a burst", "N")] = 40
    public_url: Annotated[
        str | None,
        Flag("base URL users reach Netra at, for printed links", "URL", default="http://HOST:PORT"),
    ] = None
    # A client whose WebSocket drops keeps its session (peer, publication, subscriptions) this
    # long, so that it can resume on a new socket; 0 ends it with the socket.
    grace_period: Annotated[
        float,
        Field(ge=0),
        Flag("seconds a client's session outlives its dropped WebSocket", "SECONDS"),
    ] = 30.0
    # aiohttp pings after this much silence and drops a client that does not answer within
    # half of it: a half-open client is noticed within 1.5 × heartbeat.
    heartbeat: Annotated[
        float, Field(gt=0), Flag("seconds of WebSocket silence before the server pings", "SECONDS")
    ] = 10.0
    max_rooms: Annotated[int, Field(ge=1), Flag("rooms open at once", "N")] = 1000
    max_viewers_per_room: Annotated[int, Field(ge=1), Flag("viewers in one room", "N")] = 1000
    max_connections_per_address: Annotated[
        int, Field(ge=1), Flag("WebSocket connections from one client address", "N")
    ] = 1000
    message_rate: Annotated[
        float,
        Field(gt=0),
        Flag("WebSocket messages per second per connection (bursts of twice that)", "PER_SECOND"),
    ] = 20.0
    join_rate: Annotated[
        int, Field(ge=1), Flag("join attempts per client address per minute", "N")
    ] = 1200
    log_format: Annotated[
        Literal["text", "json"], Flag("text, or json: one JSON object per line", "FORMAT")
    ] = "text"
    # The per-viewer forwarding loop: native (C, built at install) unless it is missing or
    # python is asked for; python is the reference, and the fallback.
    fanout: Annotated[
        Literal["auto", "native", "python"],
        Flag("auto, native or python: how packets are sent to each viewer", "PATH"),
    ] = "auto"

    # A cluster (docs/scale-out.md): nodes that share one Redis, and pull each other's rooms.
    redis: Annotated[
        str | None,
        Flag("redis:// URL of the cluster's directory; without it Netra is one process", "URL"),
    ] = None
    node_id: Annotated[
        str | None,
        Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$"),
        Flag("this node's name in the cluster", "NAME", default="HOSTNAME-PID"),
    ] = None
    relay_url: Annotated[
        str | None,
        Flag(
            "base URL other nodes pull this node's rooms from",
            "URL",
            default="http://CANDIDATE-ADDRESS:PORT",
        ),
    ] = None
    workers: Annotated[
        int,
        Field(ge=0),
        Flag("processes sharing the port, each a cluster node (needs --redis); 0: one a core", "N"),
    ] = 1
    relay_copies: Annotated[
        int,
        Field(ge=0, le=3),
        Flag(
            "datagrams sent of each packet a node pulls from this one (each copy is lost on its"
            " own, at that many times the pull's bandwidth); 0: one, and two while the pull"
            " reports loss",
            "N",
        ),
    ] = 0
    relay_linger: Annotated[
        float,
        Field(ge=0),
        Flag("seconds a pull from another node outlives its last viewer", "SECONDS"),
    ] = 30.0

    @property
    def node_url(self) -> str:
        """Where the other nodes of a cluster reach this one."""
        if self.relay_url:
            return self.relay_url
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = self.candidate_addresses[0] if self.candidate_addresses else socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Where users reach the server, for printed links: public_url, else host and port."""
        if self.public_url:
            return self.public_url
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _ice_servers(cls, value: Any) -> tuple[IceServer, ...]:
        # From the environment, one string; from flags, one string per --ice-server; from
        # code, IceServer objects. Each string is a comma list of URLs or JSON.
        items: list[Any] = []
        for part in [value] if isinstance(value, str) else list(value):
            items.extend(_ice_items(part) if isinstance(part, str) else [part])
        return tuple(_ice_server(index, item) for index, item in enumerate(items))

    @field_validator("candidate_addresses", mode="before")
    @classmethod
    def _candidate_addresses(cls, value: Any) -> tuple[str, ...]:
        parts = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_ip(str(part).strip()) for part in parts if str(part).strip())

    @field_validator("announced_ip")
    @classmethod
    def _announced_ip(cls, value: str | None) -> str | None:
        return None if value is None else _ip(value.strip())

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level ({', '.join(LOG_LEVELS)})")
        return value.upper()

    @field_validator("auth_secret")
    @classmethod
    def _auth_secret(cls, value: str | None) -> str | None:
        # Never echo the secret, not even a bad one: error lines end up in logs.
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"is only {len(value.encode())} bytes; an HS256 secret needs at least "
                f"{MIN_SECRET_BYTES} (make one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("udp_ports", mode="before")
    @classmethod
    def _udp_ports(cls, value: Any) -> tuple[int, int] | None:
        if value is None or isinstance(value, tuple):
            return value
        low, _, high = str(value).strip().partition("-")
        try:
            ports = (int(low), int(high or low))
        except ValueError:
            raise ValueError(f"{value!r} is not a port or a LOW-HIGH range") from None
        if not 1 <= ports[0] <= ports[1] <= 65535:
            raise ValueError(f"{value!r}: ports are 1-65535, LOW no higher than HIGH")
        return ports

    @field_validator("redis")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("public_url", "relay_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")


def load_config(**flags: Any) -> Config:
    """The Config from `flags` (field names; None means not given) over the environment,
    or a ConfigError naming the first bad setting."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Config(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        raise ConfigError(
            f"bad setting {setting_name(field, field in given)}: {_why(error)}"
        ) from None


def setting_name(field: str, from_flag: bool) -> str:
    """`--ice-server` when the value came from a flag, else `NETRA_ICE_SERVERS`."""
    if not from_flag:
        return ENV_PREFIX + field.upper()
    info = Config.model_fields.get(field)
    flag = next((m for m in info.metadata if isinstance(m, Flag)), None) if info else None
    return "--" + (flag.name if flag and flag.name else field.replace("_", "-"))


def _why(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "value_error":  # ours: the message already shows the value
        return message
    message = message[:1].lower() + message[1:]
    if error["loc"] and error["loc"][0] == "auth_secret":
        return message
    return f"{message} (got {error['input']!r})"


def _ip(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    return text


def _ice_items(text: str) -> list[Any]:
    """A comma list of URLs, or JSON: a list of RTCIceServer objects or URLs, or one object."""
    text = text.strip()
    if not text.startswith(("[", "{")):
        return [url.strip() for url in text.split(",") if url.strip()]
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"starts with {text[0]!r} but is not JSON ({exc})") from None
    return parsed if isinstance(parsed, list) else [parsed]


def _ice_server(index: int, item: Any) -> IceServer:
    if isinstance(item, IceServer):
        server = item
    elif isinstance(item, str):
        server = IceServer(urls=(item.strip(),))
    elif isinstance(item, dict):
        if "urls" not in item:
            raise ValueError(f'item {index} has no "urls" {_ICE_SERVER_SHAPE}')
        unknown = sorted(set(item) - {"urls", "username", "credential"})
        if unknown:
            raise ValueError(
                f"item {index} has unknown key {unknown[0]!r} (an RTCIceServer has "
                '"urls", "username", "credential")'
            )
        urls = item["urls"]
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ValueError(f'item {index}: "urls" must be a URL or a non-empty list of URLs')
        for key in ("username", "credential"):
            if not isinstance(item.get(key, ""), str):
                raise ValueError(f"item {index}: {key!r} must be a string")
        server = IceServer(tuple(urls), item.get("username"), item.get("credential"))
    else:
        raise ValueError(f"item {index} is {item!r}, not a URL or an RTCIceServer object")
    for url in server.urls:
        if not url.lower().startswith(ICE_SCHEMES) or ":" not in url.rstrip(":"):
            raise ValueError(f"{url!r} is not a STUN or TURN URL (stun:, stuns:, turn:, turns:)")
        # Browsers refuse a TURN server without credentials (InvalidAccessError), and this
        # list goes to them in `joined`.
        if url.lower().startswith("turn") and (server.username is None or not server.credential):
            raise ValueError(
                f'{url!r} needs a username and credential: give a JSON RTCIceServer, {{"urls": '
                '"turn:host:3478", "username": "...", "credential": "..."}'
            )
    return server
