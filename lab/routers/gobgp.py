"""GoBGP as an upstream or a route reflector.

`gobgpd -f gobgpd.toml --api-hosts unix://WORKDIR/gobgp.sock` runs in the namespace and
`gobgp --target unix://...` queries it. Originated prefixes are added through the API
after start (gobgpd's config file has no networks section).

GoBGP installs no kernel routes by itself and its `[zebra]` client (3.10) cannot talk to
Debian's FRR 8.4 zebra: decoding zebra's interface messages panics gobgpd with every
`software-name` it knows (frr8, frr8.1, frr8.2). So an upstream GoBGP also runs
`lab.routers.gobgp_fib`, a FIB agent in its namespace that follows GoBGP's best
(multi)paths and installs them as kernel routes (protocol 188, ECMP over every multipath
next hop); it is started after gobgpd and stopped before it, by its recorded PID, and
takes its routes with it. A reflector stays control plane only: it runs no agent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lab.routers.base import (
    HOLD_TIME,
    KEEPALIVE,
    RESTART_TIME,
    DaemonRouter,
    NeighborConf,
    RouterError,
    RouterSpec,
    neighbor,
    sorted_communities,
)

_SESSION_STATES = {0: "unknown", 1: "idle", 2: "connect", 3: "active", 6: "established"}


def render_gobgpd(spec: RouterSpec) -> str:
    """gobgpd.toml for `spec`: accept everything, GR on, multipath on the upstream."""
    lines = [
        f"# kroute lab: GoBGP {spec.role} {spec.router_id} AS {spec.asn} in {spec.netns}",
        "[global.config]",
        f"  as = {spec.asn}",
        f'  router-id = "{spec.router_id}"',
    ]
    if spec.role == "upstream":
        lines += ["[global.use-multiple-paths.config]", "  enabled = true"]
    for n in spec.neighbors:
        lines += _gobgp_neighbor(spec, n)
    return "\n".join(lines) + "\n"


def _gobgp_neighbor(spec: RouterSpec, n: NeighborConf) -> list[str]:
    lines = [
        "[[neighbors]]",
        "  [neighbors.config]",
        f'    neighbor-address = "{n.address}"',
        f"    peer-as = {n.asn}",
    ]
    if n.password is not None:
        lines.append(f'    auth-password = "{n.password}"')
    lines += [
        "  [neighbors.timers.config]",
        "    connect-retry = 2",
        f"    hold-time = {HOLD_TIME}",
        f"    keepalive-interval = {KEEPALIVE}",
        "  [neighbors.graceful-restart.config]",
        "    enabled = true",
        f"    restart-time = {RESTART_TIME}",
    ]
    if n.multihop:
        lines += [
            "  [neighbors.ebgp-multihop.config]",
            "    enabled = true",
            f"    multihop-ttl = {n.multihop}",
        ]
    if n.rr_client:
        lines += [
            "  [neighbors.route-reflector.config]",
            "    route-reflector-client = true",
            f'    route-reflector-cluster-id = "{spec.router_id}"',
        ]
    lines += [
        "  [[neighbors.afi-safis]]",
        "    [neighbors.afi-safis.config]",
        '      afi-safi-name = "ipv4-unicast"',
        "    [neighbors.afi-safis.mp-graceful-restart.config]",
        "      enabled = true",
    ]
    return lines


def _attr(path: dict[str, Any], kind: int) -> dict[str, Any]:
    for attr in path.get("attrs", []):
        if attr.get("type") == kind:
            return dict(attr)
    return {}


def path_nexthop(path: dict[str, Any]) -> str | None:
    """The NEXT_HOP of one path of `gobgp ... -j`; None for a locally originated one."""
    hop = _attr(path, 3).get("nexthop") or _attr(path, 14).get("nexthop")
    return None if hop in (None, "0.0.0.0") else str(hop)


def path_as_path(path: dict[str, Any]) -> list[int]:
    segments = _attr(path, 2).get("as_paths", [])
    return [int(asn) for segment in segments for asn in segment.get("asns", [])]


def path_communities(path: dict[str, Any]) -> list[str]:
    return sorted_communities([int(c) for c in _attr(path, 8).get("communities", [])])


def gobgp_best(rib: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """prefix -> next hop of the best path of `gobgp global rib -j`, which marks one path
    best even when multipath is on (the FIB agent installs every multipath next hop)."""
    found: dict[str, list[str]] = {}
    for prefix, paths in rib.items():
        for path in paths:
            if path.get("best"):
                hop = path_nexthop(path)
                found[prefix] = [hop] if hop else []
    return found


class GobgpRouter(DaemonRouter):
    """GoBGP in a namespace; see the module docstring."""

    kind = "gobgp"

    @property
    def socket_path(self) -> Path:
        return self.spec.workdir / "gobgp.sock"

    @property
    def fib_log_path(self) -> Path:
        return self.spec.workdir / "gobgp-fib.log"

    def _start(self) -> None:
        conf = self.spec.workdir / "gobgpd.toml"
        conf.write_text(render_gobgpd(self.spec))
        self.socket_path.unlink(missing_ok=True)
        api = f"unix://{self.socket_path}"
        argv = ["gobgpd", "-f", str(conf), "--api-hosts", api, "--pprof-disable", "-p"]
        self.launch(argv, self.log_path)
        self.wait_ready(self._answers, f"gobgpd answering on {self.socket_path}")
        for prefix in self.spec.originate:
            self.gobgp(["global", "rib", "add", "-a", "ipv4", prefix], f"originating {prefix}")
        if self.spec.role == "upstream":
            self._start_fib(api)

    def _start_fib(self, api: str) -> None:
        """Start the FIB agent (see lab.routers.gobgp_fib) and wait for its first sync."""
        ready = self.spec.workdir / "gobgp-fib.ready"
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "lab.routers.gobgp_fib",
            "--target",
            api,
            "--ready",
            str(ready),
        ]
        root = str(Path(__file__).resolve().parents[2])  # where `lab` imports from
        self.launch(argv, self.fib_log_path, {"PYTHONPATH": root, "PYTHONUNBUFFERED": "1"})
        try:
            self.wait_ready(ready.exists, "the FIB agent's first sync")
        except RouterError as exc:
            what = str(exc).splitlines()[0].removeprefix(f"{self}: ")
            raise self.fail(what, self.fib_log_path) from None

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            self.gobgp(["global"], "asking for the global config")
        except Exception:
            return False
        return True

    def gobgp(self, args: list[str], what: str) -> str:
        return self.run(["gobgp", "--target", f"unix://{self.socket_path}", *args], what)

    def query(self, args: list[str]) -> Any:
        out = self.gobgp([*args, "-j"], f"gobgp {' '.join(args)}")
        try:
            return json.loads(out or "null")
        except ValueError:
            raise self.fail(f"gobgp {' '.join(args)} printed no JSON: {out[:200]!r}") from None

    def _rib(self) -> dict[str, list[dict[str, Any]]]:
        return self.query(["global", "rib", "-a", "ipv4"]) or {}

    def routes(self) -> dict[str, list[str]]:
        return gobgp_best(self._rib())

    def received_from(self, neighbor_address: str) -> list[str]:
        neighbor(self.spec, neighbor_address)
        rib = self.query(["neighbor", neighbor_address, "adj-in", "-a", "ipv4"]) or {}
        return sorted(rib)

    def neighbor_state(self, address: str) -> str:
        neighbor(self.spec, address)
        state = (self.query(["neighbor", address]) or {}).get("state", {})
        value = state.get("session_state", 0)
        return _SESSION_STATES.get(value, str(value)) if isinstance(value, int) else str(value)

    def _best(self, prefix: str) -> dict[str, Any]:
        for path in self._rib().get(prefix, []):
            if path.get("best"):
                return path
        raise self.fail(f"no route for {prefix}")

    def communities(self, prefix: str) -> list[str]:
        return path_communities(self._best(prefix))

    def as_path(self, prefix: str) -> list[int]:
        return path_as_path(self._best(prefix))
