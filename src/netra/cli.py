"""`netra serve`: the console entry point."""

from __future__ import annotations

import argparse
import logging
import sys

from netra.config import config_from_env, parse_ice_servers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netra", description="Netra live-streaming server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0, env NETRA_HOST)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8080, env NETRA_PORT)")
    serve.add_argument(
        "--ice-server",
        action="append",
        metavar="URL",
        help="STUN/TURN URL given to every peer connection; repeatable (env NETRA_ICE_SERVERS)",
    )
    serve.add_argument(
        "--candidate-address",
        action="append",
        metavar="IP",
        help="address to offer as ICE host candidate; repeatable (default: the host's own)",
    )
    serve.add_argument(
        "--announced-ip",
        metavar="IP",
        help="public address of a server behind 1:1 NAT, written into the server's SDP",
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    bench = commands.add_parser(
        "bench", help="measure how many viewers a server carries (a load tool; see README)"
    )
    from netra.bench.command import add_arguments

    add_arguments(bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from netra.bench.command import main as bench

        bench(args)
        return
    try:
        config = config_from_env(
            host=args.host,
            port=args.port,
            ice_servers=parse_ice_servers(",".join(args.ice_server)) if args.ice_server else None,
            candidate_addresses=tuple(args.candidate_address) if args.candidate_address else None,
            announced_ip=args.announced_ip,
            log_level=args.log_level,
        )
    except ValueError as exc:
        sys.exit(f"netra: bad configuration: {exc}")
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from netra.app import run

    run(config)
