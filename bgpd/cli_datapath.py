"""`kroute datapath [-o json]` and the datapath lines of `kroute status`."""

from __future__ import annotations

import argparse
from typing import Any

from bgpd.client import call, socket_path
from bgpd.config import DEFAULT_SOCKET


def host_routing(dp: dict[str, Any]) -> str:
    """`BPF`, or `Legacy (why)`: what forwards pod traffic on this node."""
    mode = str(dp["hostRouting"])
    return f"{mode} ({dp['reason']})" if dp.get("reason") else mode


def masquerading(dp: dict[str, Any]) -> str:
    masq = dp.get("masquerade") or {}
    if not masq.get("enabled"):
        return "Disabled"
    active = masq.get("active")
    return str(active) if active else "requested, not available in this build"


def status_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs for `kroute status`; none when the daemon has no datapath."""
    dp = status.get("datapath")
    if not dp:
        return []
    lines = [("Host Routing", host_routing(dp)), ("Masquerading", masquerading(dp))]
    if dp.get("lastError"):
        lines.append(("Datapath", "SYNC FAILING: " + str(dp["lastError"])))
    return lines


def _rows(rows: list[list[str]], headers: list[str]) -> str:
    from bgpd.cli import _table

    return _table(headers, rows) if rows else "(none)"


def format_datapath(dp: dict[str, Any]) -> str:
    out = [f"Host Routing: {host_routing(dp)}", f"Masquerading: {masquerading(dp)}"]
    if dp.get("ipForward") is not None:
        out.append(f"ip_forward:   {1 if dp['ipForward'] else 0}")
    if "maps" not in dp:
        return "\n".join(out)
    out.append(f"Pin dir:      {dp['pinDir']}")
    out.append("\nPrograms")
    out.append(_rows([[i, p] for i, p in dp["attached"].items()], ["INTERFACE", "PROGRAM (tc)"]))
    out.append("\nMaps")
    maps = [
        [name, str(m["entries"]), str(m["max"]), f"{100 * m['entries'] / m['max']:.1f}%"]
        for name, m in dp["maps"].items()
    ]
    out.append(_rows(maps, ["MAP", "ENTRIES", "MAX", "FILL"]))
    out.append("\nCounters (packets since the maps were pinned)")
    out.append(_rows([[k, str(v)] for k, v in dp["counters"].items()], ["COUNTER", "VALUE"]))
    if dp.get("skippedRoutes"):
        out.append("\nLeft to the kernel stack: " + "; ".join(dp["skippedRoutes"]))
    return "\n".join(out)


def cmd_datapath(args: argparse.Namespace) -> int:
    import json

    data = call(socket_path(args.socket), "/datapath")
    print(json.dumps(data, indent=2) if args.output == "json" else format_datapath(data))
    return 0


def register(sub: Any) -> None:
    show = sub.add_parser(
        "datapath",
        help="eBPF programs per interface, map fill, counters (or why the kernel forwards)",
        description="Example: kroute datapath -o json",
    )
    show.add_argument("-o", "--output", choices=["table", "json"], default="table")
    show.add_argument(
        "--socket", help=f"daemon socket (default: $KROUTE_SOCKET or {DEFAULT_SOCKET})"
    )
    show.set_defaults(func=cmd_datapath)
