"""Access tokens: HS256 JWTs that say which rooms their holder may publish to or watch.

A token's claims (RFC 7519), and nothing else is read:

    {"room": "team-*", "grants": ["publish", "subscribe"], "sub": "alice",
     "iat": 1767225600, "exp": 1767229200, "nbf": 1767225600}

- `room` (required): a room name, or a pattern in which `*` stands for any run of room-name
  characters (`[A-Za-z0-9_-]`): `team-*` covers `team-a` but not `teams`; `*` covers every
  room. No other glob characters.
- `grants` (required, non-empty): a list of `publish`, `subscribe`, `admin`, `relay`. Each
  grant stands alone: `admin` does not imply the others. `relay` is for the nodes of a cluster:
  a node pulling a room's stream from its origin node watches without counting as a viewer.
- `exp` (required), `nbf` (optional): checked with a few seconds' leeway for clock skew.
- `sub` (optional): who holds the token, for logs.

Only HS256 is accepted (never `alg: none`, never an algorithm named by the token alone). The
secret is `Config.auth_secret`, or one generated once into the state directory so that a fresh
`netra serve` has working links and `netra token` mints tokens it accepts.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt

from netra.config import MIN_SECRET_BYTES, Config, ConfigError
from netra.errors import NotAuthorised, forbidden, unauthorized

ALGORITHM = "HS256"
LEEWAY = 5.0  # seconds of clock skew allowed on exp and nbf
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_*-]{1,64}")
SECRET_FILE = "secret"


class Grant(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    ADMIN = "admin"
    RELAY = "relay"


@dataclass(frozen=True)
class Claims:
    room: str  # a name or a pattern with `*`
    grants: frozenset[Grant]
    identity: str | None
    expires_at: float


def mint(
    secret: str,
    *,
    room: str,
    publish: bool = False,
    subscribe: bool = False,
    admin: bool = False,
    relay: bool = False,
    ttl: float = 3600,
    identity: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token for `room` (a name or pattern) with the given grants, valid `ttl` s."""
    _check_secret(secret)
    check_room_pattern(room)
    wanted = (publish, subscribe, admin, relay)
    grants = [g for g, want in zip(Grant, wanted, strict=True) if want]
    if not grants:
        raise ValueError("a token needs at least one grant (publish, subscribe or admin)")
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, not {ttl}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "room": room,
        "grants": [str(g) for g in grants],
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    if identity is not None:
        claims["sub"] = identity
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def check_room_pattern(room: str) -> None:
    if not ROOM_PATTERN.fullmatch(room):
        raise ValueError(f"{room!r} is not a room name or pattern ([A-Za-z0-9_-] and *)")


def room_matches(pattern: str, room: str) -> bool:
    """Whether a token's room pattern covers `room`; `*` is any run of name characters."""
    regex = "[A-Za-z0-9_-]*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, room) is not None


def allows(claims: Claims, room: str, grant: Grant) -> bool:
    return grant in claims.grants and room_matches(claims.room, room)


class Authority:
    """Checks tokens against one secret; every refusal is a NotAuthorised error saying why."""

    def __init__(self, secret: str) -> None:
        _check_secret(secret)
        self._secret = secret

    def verify(self, token: str | None) -> Claims:
        if not token:
            raise unauthorized("no token")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                leeway=LEEWAY,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("token signature does not match this server's secret") from None
        except jwt.InvalidAlgorithmError:
            raise unauthorized(f"token is not signed with {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"token has no {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:  # DecodeError and the rest: not a usable JWT
            raise unauthorized(f"malformed token ({exc})") from None
        return _claims(payload)

    def mint_relay(self, room: str, ttl: float = 60) -> str:
        """The token one node of a cluster pulls a room's stream from another with."""
        return mint(self._secret, room=room, relay=True, ttl=ttl, identity="relay")

    def grants(self, token: str | None, room: str, grant: Grant) -> Claims | None:
        """The token's claims if it is valid and grants `grant` in `room`; else None."""
        try:
            return self.authorize(token, room, grant)
        except NotAuthorised:
            return None

    def authorize(self, token: str | None, room: str, grant: Grant) -> Claims:
        claims = self.verify(token)
        if not room_matches(claims.room, room):
            raise forbidden(f"token is for room {claims.room!r}, not {room!r}")
        if grant not in claims.grants:
            raise forbidden(f"token does not grant {str(grant)!r} in room {room!r}")
        return claims


def _claims(payload: dict[str, Any]) -> Claims:
    room, grants, identity = payload.get("room"), payload.get("grants"), payload.get("sub")
    if not isinstance(room, str) or not ROOM_PATTERN.fullmatch(room):
        raise unauthorized("malformed token (no valid 'room' claim)")
    if not isinstance(grants, list) or not grants:
        raise unauthorized("malformed token ('grants' must be a non-empty list)")
    known = set(Grant)
    if not all(isinstance(g, str) and g in known for g in grants):
        raise unauthorized(f"malformed token (unknown grant in {grants!r})")
    return Claims(
        room=room,
        grants=frozenset(Grant(g) for g in grants),
        identity=identity if isinstance(identity, str) else None,
        expires_at=float(payload["exp"]),
    )


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes")


def secret_for(config: Config) -> str:
    """The secret `netra serve` signs and checks tokens with."""
    return config.auth_secret or load_or_create_secret(config.state_dir)[0]


def load_or_create_secret(state_dir: Path) -> tuple[str, bool]:
    """The secret stored in `state_dir`, made on first use; and whether it was just made."""
    path = state_dir / SECRET_FILE
    try:
        if path.exists():
            secret, created = path.read_text().strip(), False
        else:
            secret, created = _create_secret(state_dir, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep a token secret in {path}: {exc.strerror} "
            "(set NETRA_STATE_DIR or NETRA_AUTH_SECRET)"
        ) from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"the token secret in {path} is too short; delete it to make a new one")
    return secret, created


def _create_secret(state_dir: Path, path: Path) -> tuple[str, bool]:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the mode applies if it is new
    secret = secrets.token_urlsafe(48)
    # Written whole under a private name, then linked into place: a second netra starting at
    # the same moment either wins the link or reads a complete file, never a partial one.
    temporary = state_dir / f".{SECRET_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        return path.read_text().strip(), False
    finally:
        temporary.unlink()
    return secret, True
