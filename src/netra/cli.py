"""`netra serve`, `netra token`, `netra bench`: the console entry point.

A bad setting ends the command with one line on stderr, `netra: ...`, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any, NoReturn, get_origin

from netra.auth import SECRET_FILE, check_room_pattern, load_or_create_secret, mint
from netra.config import Config, ConfigError, Flag, load_config, setting_name
from netra.observability.log import configure_logging

logger = logging.getLogger("netra")

# The home page link `serve` prints carries a publish token for every room: the operator
# who reads the server's log may go live at once, and nobody else.
QUICK_START_TTL = 30 * 86400
_TTL = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netra", description="Netra live-streaming server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    _add_config_flags(serve, list(Config.model_fields))
    token = commands.add_parser(
        "token", help="print an access token signed with the secret `netra serve` uses"
    )
    token.add_argument(
        "--room",
        metavar="NAME",
        help="room name, or a pattern such as team-* ('*' is every room; the default only "
        "for an --admin token)",
    )
    token.add_argument("--publish", action="store_true", help="may go live in the room")
    token.add_argument("--subscribe", action="store_true", help="may watch the room")
    token.add_argument("--admin", action="store_true", help="may administer the room")
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 15m, 1h, 7d or seconds")
    token.add_argument("--identity", metavar="ID", help="who holds it (the token's sub)")
    _add_config_flags(token, ["auth_secret", "state_dir"])
    bench = commands.add_parser(
        "bench", help="measure how many viewers a server carries (a load tool; see README)"
    )
    from netra.bench.command import add_arguments

    add_arguments(bench)
    return parser


def _add_config_flags(parser: argparse.ArgumentParser, fields: list[str]) -> None:
    """One flag per Config field, from its `Flag`. Values stay strings: Config validates
    them, so a bad flag gets the same one-line error as a bad environment variable."""
    for name in fields:
        info = Config.model_fields[name]
        flag = next(m for m in info.metadata if isinstance(m, Flag))
        shown = info.default not in (None, (), False) and info.default_factory is None
        default = flag.default or (str(info.default) if shown else None)
        options: dict[str, Any] = {
            "dest": name,
            "help": f"{flag.help} ({f'default {default}, ' if default else ''}"
            f"env {setting_name(name, from_flag=False)})",
        }
        if info.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = flag.metavar
            options["action"] = "append" if get_origin(info.annotation) is tuple else "store"
        parser.add_argument(setting_name(name, from_flag=True), **options)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from netra.bench.command import main as bench

        bench(args)
        return
    try:
        config = load_config(
            **{name: getattr(args, name) for name in Config.model_fields if hasattr(args, name)}
        )
        if args.command == "token":
            _token(args, config)
        else:
            _serve(config)
    except ConfigError as exc:
        _fail(str(exc))


def _serve(config: Config) -> None:
    configure_logging(config.log_level, config.log_format)
    if config.auth_secret:
        secret = config.auth_secret
        logger.info("Netra on %s", config.base_url)
    else:
        # Quick start: no secret configured, so use (or make) the stored one and hand the
        # operator a link that can go live in any room.
        secret, created = load_or_create_secret(config.state_dir)
        if created:
            logger.info("Netra stored a new token secret in %s", config.state_dir / SECRET_FILE)
        token = mint(secret, room="*", publish=True, ttl=QUICK_START_TTL)
        logger.info("Netra on %s/?token=%s", config.base_url, token)
    if config.workers != 1:
        from netra.cluster.workers import run_workers

        run_workers(config, secret)
        return
    from netra.app import run

    run(config, secret=secret)


def _token(args: argparse.Namespace, config: Config) -> None:
    if not (args.publish or args.subscribe or args.admin):
        _fail("token: give at least one grant: --publish, --subscribe or --admin")
    room = args.room
    if room is None:
        if args.publish or args.subscribe:
            _fail("token: --room is required (only an --admin token defaults to every room)")
        room = "*"
    try:
        check_room_pattern(room)
    except ValueError as exc:
        _fail(f"token: {exc}")
    ttl = parse_ttl(args.ttl)
    if ttl is None:
        _fail(f"token: bad --ttl {args.ttl!r}: use 90s, 15m, 1h, 7d or seconds")
    if config.auth_secret:
        secret = config.auth_secret
    else:
        secret, created = load_or_create_secret(config.state_dir)
        if created:  # on stderr: stdout is the token alone
            where = config.state_dir / SECRET_FILE
            print(f"netra: stored a new token secret in {where}", file=sys.stderr)
    token = mint(
        secret,
        room=room,
        publish=args.publish,
        subscribe=args.subscribe,
        admin=args.admin,
        ttl=ttl,
        identity=args.identity,
    )
    print(token)


def parse_ttl(text: str) -> float | None:
    """Seconds in `90s`, `15m`, `1h`, `7d` or `3600`; None if it is none of those or zero."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        return None
    seconds = float(match[1]) * _TTL_UNITS[match[2]]
    return seconds if seconds > 0 else None


def _fail(message: str) -> NoReturn:
    print(f"netra: {message}", file=sys.stderr)
    sys.exit(2)
