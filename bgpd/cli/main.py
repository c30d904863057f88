"""The `kroute` command: run the daemon, check a config, and talk to a running daemon.

Every subcommand's help ends with examples; every command that reads takes
`-o table|json|yaml` (bgpd.cli.output) and `--socket PATH` or `--address HOST:PORT`
(bgpd.api.client); commands that change the node take only `--socket`. Exit codes are
EXIT_CODES below (also in `kroute --help` and docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bgpd.api.client import add_target_flags, call, target
from bgpd.cli.datapath import register as register_datapath
from bgpd.cli.output import EXIT_CODES, add_output_flag, command, render
from bgpd.cli.tables import (
    format_ipam,
    format_nodes,
    format_peers,
    format_pools,
    format_routes,
    format_services,
    format_status,
)
from bgpd.config.logging_setup import LOG_FORMATS
from bgpd.config.logging_setup import configure as configure_logging
from bgpd.config.model import load_config
from common.errors import ConfigError, KrouteError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _show(args: argparse.Namespace, formatter: Any, endpoint: str) -> int:
    data = call(target(args), endpoint)
    print(render(data, args.output, formatter))
    return EXIT_OK


def cmd_drain(args: argparse.Namespace) -> int:
    answer = call(target(args), f"/drain?wait={args.wait}", method="POST")
    print(f"draining: prefixes carry 65535:0 now and are withdrawn in {answer['withdrawIn']:g}s")
    return EXIT_OK


def cmd_node_remove(args: argparse.Namespace) -> int:
    call(target(args), f"/nodes/remove?name={args.name}", method="POST")
    print(f"node {args.name}: blocks and pod IPs released")
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    answer = call(target(args), "/reload", method="POST")
    print(f"reloaded: {answer['peers']} peers")
    return EXIT_OK


def cmd_undrain(args: argparse.Namespace) -> int:
    call(target(args), "/undrain", method="POST")
    print("undrained: prefixes announced normally again")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    peers = len(config.peers())
    print(f"{args.file}: valid (node {config.node.name}, AS {config.bgp.asn}, {peers} peers)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from bgpd.runner import run_daemon  # imported late: `kroute status` stays fast

    config = load_config(args.config)
    if args.log_format is None:
        configure_logging(args.verbose, config.log.format)
    asyncio.run(run_daemon(config, args.config))
    return EXIT_OK


def cmd_config_reference(args: argparse.Namespace) -> int:
    from bgpd.config.reference import reference

    text = reference()
    if args.write is None:
        print(text, end="")
    else:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    from datapath.netlink import NetlinkKernelRoutes
    from datapath.routes import KernelRouteReconciler

    reconciler = KernelRouteReconciler(NetlinkKernelRoutes())
    try:
        removed = reconciler.cleanup()
    finally:
        reconciler.close()
    print(f"removed {removed} kernel routes with proto bgp")
    return EXIT_OK


READ_COMMANDS = (
    ("status", format_status, "/status", "summary of the running daemon (like cilium status)"),
    ("peers", format_peers, "/status", "BGP sessions (like calicoctl node status)"),
    ("routes", format_routes, "/routes", "every prefix: paths, kernel, advertised, why not"),
    ("ipam", format_ipam, "/ipam", "node blocks and pod IPs (ipam.mode cluster-pool)"),
    ("nodes", format_nodes, "/nodes", "cluster members and their pod CIDRs"),
    ("pools", format_pools, "/pools", "LoadBalancer IP pools and their usage"),
    ("services", format_services, "/services", "LoadBalancer services: IPs, announcers"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kroute",
        description="Node routing daemon: BGP for pod CIDRs and LoadBalancer IPs, kernel routes.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="log lines as key=value text or JSON objects (default: the config's log.format, "
        "else text)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = command(sub, "run", "run the daemon", "kroute run --config /etc/kroute/kroute.yaml")
    run.add_argument("--config", "-c", default="/etc/kroute/kroute.yaml", help="config file")
    run.set_defaults(func=cmd_run)

    check = command(
        sub,
        "check-config",
        "validate a config file (exit 2 and every error when invalid)",
        "kroute check-config /etc/kroute/kroute.yaml",
    )
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    for name, formatter, endpoint, text in READ_COMMANDS:
        show = command(
            sub,
            name,
            text,
            f"kroute {name}",
            f"kroute {name} -o yaml --socket /run/kroute/kroute.sock",
            f"kroute {name} -o json --address 10.0.0.5:9479",
        )
        add_output_flag(show)
        add_target_flags(show, read_only=True)
        show.set_defaults(func=lambda a, f=formatter, e=endpoint: _show(a, f, e))

    drain = command(
        sub,
        "drain",
        "move traffic away: GRACEFUL_SHUTDOWN, then withdraw our prefixes",
        "kroute drain --wait 30    # undo with kroute undrain",
    )
    drain.add_argument("--wait", type=float, default=30.0, help="seconds before withdrawing")
    drain.set_defaults(func=cmd_drain)
    undrain = command(sub, "undrain", "announce our prefixes normally again", "kroute undrain")
    undrain.set_defaults(func=cmd_undrain)
    reload_ = command(
        sub,
        "reload",
        "re-read the config file (as SIGHUP); an invalid file is refused",
        "kroute reload    # errors print like check-config; exit 1",
    )
    reload_.set_defaults(func=cmd_reload)
    node = command(sub, "node", "cluster node operations", "kroute node remove kr-n4")
    node_sub = node.add_subparsers(dest="node_command", required=True, metavar="ACTION")
    remove = command(
        node_sub,
        "remove",
        "release a removed node's pod CIDR blocks and pod IPs",
        "kroute node remove kr-n4    # only for a node that is gone",
    )
    remove.add_argument("name")
    remove.set_defaults(func=cmd_node_remove)
    for mutating in (drain, undrain, reload_, remove):
        add_target_flags(mutating, read_only=False)

    cleanup = command(
        sub,
        "cleanup",
        "remove every kernel route kroute installed",
        "systemctl stop kroute && kroute cleanup",
    )
    cleanup.set_defaults(func=cmd_cleanup)

    reference_ = command(
        sub,
        "config-reference",
        "print the configuration reference (Markdown) generated from the config model",
        "kroute config-reference --write docs/configuration.md",
    )
    reference_.add_argument("--write", metavar="FILE", help="write it to FILE instead")
    reference_.set_defaults(func=cmd_config_reference)

    register_datapath(sub)
    from bgpd.cli.lab import register
    from bgpd.cli.lb import register as register_lb
    from bgpd.cli.operator import register as register_operator

    register_lb(sub)
    register(sub)
    register_operator(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.log_format or "text")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KrouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return code


if __name__ == "__main__":
    sys.exit(main())
