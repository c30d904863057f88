"""Tables the `kroute` read commands print with `-o table` (the default): one function
per command, from the JSON the daemon serves."""

from __future__ import annotations

from typing import Any

from bgpd.cli.datapath import status_lines
from bgpd.cli.kube_status import kube_status_lines
from bgpd.cli.output import text_table


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
    return title + "\n" + text_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], rows)


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
    return text_table(headers, rows)


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
    return text_table(["NODE", "BLOCKS / POD IP", "PODS / KEY"], rows)


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
    return text_table(headers, rows)


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
    return text_table(["SERVICE", "IPS", "POLICY", "ANNOUNCED BY", "WHY"], rows)


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
    return f"nodes from {data['source']}\n" + text_table(headers, rows)
