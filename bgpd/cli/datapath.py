"""`kroute datapath [-o json]` and the datapath lines of `kroute status`."""

from __future__ import annotations

import argparse
from typing import Any

from bgpd.api.client import add_target_flags, call, target
from bgpd.cli.output import add_output_flag, command, render, text_table


def host_routing(dp: dict[str, Any]) -> str:
    """`BPF`, or `Legacy (why)`: what forwards pod traffic on this node."""
    mode = str(dp["hostRouting"])
    return f"{mode} ({dp['reason']})" if dp.get("reason") else mode


def masquerading(dp: dict[str, Any]) -> str:
    masq = dp.get("masquerade") or {}
    if not masq.get("enabled"):
        return "Disabled"
    active = masq.get("active")
    return str(active) if active else "requested, waiting for the datapath"


def status_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs for `kroute status`; none when the daemon has no datapath."""
    dp = status.get("datapath")
    if not dp:
        return []
    lines = [("Host Routing", host_routing(dp)), ("Masquerading", masquerading(dp))]
    routing = status.get("routing")
    if routing and routing["mode"] != "native":
        text = f"{routing['mode']} (overlay {routing['overlay']})"
        counts = routing.get("routes")
        if counts:
            text += ": " + ", ".join(
                f"{counts[k]} {k}" for k in ("native", "overlay", "unreachable") if k in counts
            )
        lines.append(("Routing", text))
    if dp.get("lastError"):
        lines.append(("Datapath", "SYNC FAILING: " + str(dp["lastError"])))
    return lines


def _rows(rows: list[list[str]], headers: list[str]) -> str:
    return text_table(headers, rows) if rows else "(none)"


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
    data = call(target(args), "/datapath")
    print(render(data, args.output, format_datapath))
    return 0


def register(sub: Any) -> None:
    show = command(
        sub,
        "datapath",
        "eBPF programs per interface, map fill, counters (or why the kernel forwards)",
        "kroute datapath",
        "kroute datapath -o json --address 10.0.0.5:9479",
    )
    add_output_flag(show)
    add_target_flags(show, read_only=True)
    show.set_defaults(func=cmd_datapath)
