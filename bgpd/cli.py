"""The `kroute` command: run the daemon, check a config, and talk to a running daemon.

Every subcommand's help ends with examples; every command that reads takes
`-o table|json|yaml` (bgpd.output) and `--socket PATH` or `--address HOST:PORT`
(bgpd.client); commands that change the node take only `--socket`. Exit codes are
EXIT_CODES below (also in `kroute --help` and the README).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bgpd.cli_datapath import register as register_datapath
from bgpd.cli_datapath import status_lines
from bgpd.client import add_target_flags, call, target
from bgpd.config import load_config
from bgpd.errors import ConfigError, KrouteError
from bgpd.kube.status_lines import kube_status_lines
from bgpd.logging_setup import LOG_FORMATS
from bgpd.logging_setup import configure as configure_logging
from bgpd.output import EXIT_CODES, add_output_flag, command, render

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, widths, strict=True)) + "|"

    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def format_peers(status: dict[str, Any]) -> str:
    """A table shaped like `calicoctl node status`."""
    rows = [
        [
            p["address"],
            p["type"],
            "up" if p["state"] == "established" else "start",
            (p["since"] or "-").replace("+00:00", "Z"),
            p["info"] or p["state"],
        ]
        for p in status["peers"]
    ]
    title = (
        f"IPv4 BGP status of {status['node']} (AS {status['asn']}, router ID {status['routerId']})"
    )
    if not rows:
        return f"{title}\nNo peers configured."
    return title + "\n" + _table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], rows)


def format_status(status: dict[str, Any]) -> str:
    """A summary shaped like `cilium status`."""
    peers = status["peers"]
    up = sum(1 for p in peers if p["state"] == "established")
    speaker = status["speaker"]
    routes = status["kernelRoutes"]
    learned = sum(1 for r in routes if r["type"] == "unicast")
    lines = [
        (
            "Node",
            f"{status['node']} ({status['nodeIP']}), "
            f"router ID {status['routerId']}, AS {status['asn']}",
        ),
        ("Ready", "yes" if status["ready"] else "no (first reconcile pending)"),
        (
            "BGP speaker",
            f"ExaBGP {'running' if speaker['running'] else 'NOT running'}"
            + (f" (pid {speaker['pid']})" if speaker["pid"] else "")
            + f", restarts {speaker['restarts']}",
        ),
        ("BGP peers", f"{up}/{len(peers)} established"),
        ("Drain", status.get("drain", "none")),
        ("Advertised", ", ".join(status["advertised"]) or "nothing"),
        (
            "Kernel routes",
            f"{len(routes)} (proto bgp): {learned} learned, {len(routes) - learned} blackhole",
        ),
    ]
    lines += status_lines(status) + kube_status_lines(status)
    for line in status.get("ipam", {}).get("usage", []):
        lines.append(("IPAM", line))
    if status.get("ipam", {}).get("storeError"):
        lines.append(("IPAM store", "UNREACHABLE: " + status["ipam"]["storeError"]))
    if status.get("loadBalancer", {}).get("storeError"):
        lines.append(("LB store", "UNREACHABLE: " + status["loadBalancer"]["storeError"]))
    if status["adoptedRoutesPending"]:
        lines.append(
            (
                "Graceful restart",
                f"{status['adoptedRoutesPending']} adopted routes awaiting refresh",
            )
        )
    width = max(len(k) for k, _ in lines) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in lines)


def format_routes(routes: list[dict[str, Any]]) -> str:
    """One row per prefix: best next hops, source, kernel, advertised to, and why not."""
    rows = []
    for r in routes:
        best = [p for p in r["paths"] if p["best"]]
        kernel = r["kernel"]
        why = [r["notInstalled"]] if r["notInstalled"] else []
        why += [f"{peer}: {reason}" for peer, reason in r["notAdvertised"].items()]
        rows.append(
            [
                r["prefix"],
                ",".join(p["nextHop"] for p in best) or ("local" if r["local"] else "-"),
                ",".join(p["peer"] for p in best) or (r["local"] or "-"),
                "-" if kernel is None else kernel["type"] + (" (stale)" if kernel["stale"] else ""),
                ",".join(r["advertisedTo"]) or "-",
                "; ".join(why),
            ]
        )
    if not rows:
        return "No routes."
    headers = ["PREFIX", "NEXT HOPS", "FROM", "KERNEL", "ADVERTISED TO", "WHY NOT"]
    return _table(headers, rows)


def format_ipam(data: dict[str, Any]) -> str:
    state = data.get("state")
    if state is None:
        return f"IPAM mode {data['mode']}: pod CIDRs come from the config file."
    rows = []
    for node, blocks in state["nodeBlocks"].items():
        pods = state["podIPs"].get(node, {})
        rows.append([node, ", ".join(blocks), str(len(pods))])
    for node, pods in state["podIPs"].items():
        for key, ip in pods.items():
            rows.append([f"  {node}", ip, key])
    if not rows:
        return f"IPAM ({data['store']} store): nothing allocated yet."
    return _table(["NODE", "BLOCKS / POD IP", "PODS / KEY"], rows)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def format_pools(data: list[dict[str, Any]]) -> str:
    """Like `kubectl get ciliumloadbalancerippools`."""
    rows = [
        [
            p["name"],
            str(p["disabled"]).lower(),
            "false" if p["conflictingWith"] is None else f"true ({p['conflictingWith']})",
            str(p["available"]),
            str(p["used"]),
            _age(p["age"]),
        ]
        for p in data
    ]
    if not rows:
        return "No LoadBalancer pools (kroute pool apply, or loadBalancer.pools in the config)."
    headers = ["NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "IPS USED", "AGE"]
    return _table(headers, rows)


def format_services(data: list[dict[str, Any]]) -> str:
    rows = [
        [
            s["service"],
            ",".join(s["ips"]) or "-",
            s["trafficPolicy"],
            ",".join(s["announcedBy"]) or "-",
            ("CONFLICT; " if s["conflicting"] else "") + "; ".join(s["reasons"]),
        ]
        for s in data
    ]
    if not rows:
        return "No LoadBalancer services (kroute service apply, or loadBalancer.services)."
    return _table(["SERVICE", "IPS", "POLICY", "ANNOUNCED BY", "WHY"], rows)


def format_nodes(data: dict[str, Any]) -> str:
    rows = [
        [
            n["name"] + (" (self)" if n["self"] else ""),
            n["ip"],
            ", ".join(n["podCIDRs"]) or "-",
            "yes" if n["member"] else "gone",
            n["session"] or "-",
        ]
        for n in data["nodes"]
    ]
    headers = ["NODE", "IP", "POD CIDRS", "MEMBER", "SESSION"]
    return f"nodes from {data['source']}\n" + _table(headers, rows)


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
    from bgpd.config_reference import reference

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
    from bgpd.cli_lb import register as register_lb
    from bgpd.kube.operator_cli import register as register_operator
    from lab.cli import register

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
