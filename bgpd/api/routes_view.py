"""`kroute routes`: every prefix known, its best paths, where it went, and why not.

Built from the daemon's state on request; nothing here changes anything.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from bgpd.bgp.rib import Path, best_paths

if TYPE_CHECKING:
    from bgpd.daemon import Daemon

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _path_json(path: Path, best: bool) -> dict[str, Any]:
    attrs = path.attributes
    return {
        "peer": str(path.peer),
        "nextHop": str(attrs.next_hop),
        "asPath": list(attrs.as_path),
        "origin": attrs.origin,
        "localPref": attrs.local_pref,
        "med": attrs.med,
        "communities": list(attrs.communities),
        "originatorId": attrs.originator_id,
        "clusterList": list(attrs.cluster_list),
        "stale": path.stale,
        "best": best,
    }


def _not_advertised(daemon: Daemon, prefix: Network, peer_address: Any) -> str:
    """Why a local prefix is not sent to a peer ("" when that is just BGP's rules)."""
    status = daemon.peers[peer_address]
    peer = status.peer
    if prefix in daemon.local_prefixes:
        if daemon.drain_state == "drained":
            return "drained"
        if daemon.local_prefixes[prefix] not in peer.exports.kinds:
            return f"export policy of {peer.address} excludes {daemon.local_prefixes[prefix]}"
        if prefix.version != peer.address.version:
            return f"IPv{prefix.version} prefix, IPv{peer.address.version} session"
    else:
        return ""  # a learned route not passed on is iBGP's rule (or RFC 4456's), not a fault
    if status.state != "established":
        return f"session {status.state}"
    return ""


def routes_report(daemon: Daemon) -> list[dict[str, Any]]:
    paths = daemon.rib.paths()
    rejected = daemon.rib.rejected()
    prefixes = set(paths) | set(rejected) | set(daemon.local_prefixes) | set(daemon.kernel_routes)
    prefixes |= set(daemon.kernel_failures)
    report = []
    for prefix in sorted(prefixes, key=lambda p: (p.version, p)):
        candidates = paths.get(prefix, [])
        best = set(best_paths(candidates))
        kernel = daemon.kernel_routes.get(prefix)
        advertised_to = sorted(str(a) for a, advs in daemon.advertised.items() if prefix in advs)
        entry: dict[str, Any] = {
            "prefix": str(prefix),
            "local": daemon.local_prefixes.get(prefix),
            "paths": [_path_json(p, p in best) for p in candidates],
            "rejected": [{"peer": str(a), "reason": r} for a, r in rejected.get(prefix, [])],
            "kernel": None
            if kernel is None
            else {
                "type": "blackhole" if kernel.is_blackhole else "unicast",
                "nexthops": [str(h) for h in kernel.nexthops],
                "stale": prefix in daemon.adopted,
            },
            "advertisedTo": advertised_to,
            "notInstalled": _not_installed(daemon, prefix, candidates, rejected.get(prefix, [])),
            "notAdvertised": {
                str(a): reason
                for a in daemon.peers
                if str(a) not in advertised_to and (reason := _not_advertised(daemon, prefix, a))
            },
        }
        report.append(entry)
    return report


def _not_installed(
    daemon: Daemon, prefix: Network, paths: list[Path], refusals: list[tuple[Any, str]]
) -> str | None:
    if prefix in daemon.kernel_routes:
        return None
    if prefix in daemon.kernel_failures:
        return f"next hop unreachable: {daemon.kernel_failures[prefix]}"
    if paths:
        return "no usable next hop"
    reasons = [f"filtered by import policy of peer {a}: {r}" for a, r in refusals]
    return "; ".join(reasons) or "not learned"
