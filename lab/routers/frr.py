"""FRR as an upstream (bgpd + zebra, kernel routes with ECMP) or a route reflector (bgpd only).

Each daemon gets its own pid file, vty socket directory and zserv socket under `workdir`
(`-i`, `--vty_socket`, `-z`), so several FRR instances run at once and none touches
/etc/frr or /var/run/frr. They run as root with group frrvty (`-u root -g frrvty`): the
stock `frr` user could not reach a caller's private directory. The reflector's bgpd runs
with `-Z` (no zebra): a pure control plane that installs nothing. FRR itself still keeps
an empty /var/tmp/frr for crash logs; its per-process subdirectories go at exit.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from lab.routers.base import (
    HOLD_TIME,
    KEEPALIVE,
    RESTART_TIME,
    DaemonRouter,
    RouterSpec,
    neighbor,
    sorted_communities,
)

FRR_BIN = Path("/usr/lib/frr")
CRASH_DIR = Path("/var/tmp/frr")
MAX_PATHS = 16


def render_bgpd(spec: RouterSpec) -> str:
    """bgpd.conf for `spec`: accept everything, GR on, multipath on the upstream."""
    upstream = spec.role == "upstream"
    lines = [
        f"! kroute lab: FRR {spec.role} {spec.router_id} AS {spec.asn} in {spec.netns}",
        f"hostname {spec.netns}",
        f"log file {spec.workdir / 'bgpd.log'}",
        "!",
        f"router bgp {spec.asn}",
        f" bgp router-id {spec.router_id}",
        " no bgp ebgp-requires-policy",
        " no bgp network import-check",
        " bgp graceful-restart",
        f" bgp graceful-restart restart-time {RESTART_TIME}",
        " bgp bestpath as-path multipath-relax"
        if upstream
        else f" bgp cluster-id {spec.router_id}",
    ]
    for n in spec.neighbors:
        lines += [
            f" neighbor {n.address} remote-as {n.asn}",
            f" neighbor {n.address} timers {KEEPALIVE} {HOLD_TIME}",
            f" neighbor {n.address} timers connect 2",
        ]
        if n.password is not None:
            lines.append(f" neighbor {n.address} password {n.password}")
        if n.multihop:
            lines.append(f" neighbor {n.address} ebgp-multihop {n.multihop}")
    lines.append(" address-family ipv4 unicast")
    lines += [f"  network {p}" for p in spec.originate]
    if upstream:
        lines.append(f"  maximum-paths {MAX_PATHS}")
    lines += [
        f"  neighbor {n.address} route-reflector-client" for n in spec.neighbors if n.rr_client
    ]
    lines += [" exit-address-family", "!"]
    return "\n".join(lines) + "\n"


def render_zebra(spec: RouterSpec) -> str:
    return f"hostname {spec.netns}\nlog file {spec.workdir / 'zebra.log'}\n"


def frr_best(table: dict[str, Any]) -> dict[str, list[str]]:
    """prefix -> next hops of the best and multipath paths of `show ip bgp json`."""
    found: dict[str, list[str]] = {}
    for prefix, paths in table.get("routes", {}).items():
        chosen = [p for p in paths if p.get("bestpath") or p.get("multipath")]
        if not chosen:
            continue
        hops = {
            hop["ip"]
            for path in chosen
            for hop in path.get("nexthops", [])
            if hop.get("ip") not in (None, "0.0.0.0")
        }
        found[prefix] = sorted(hops)
    return found


def frr_best_path(detail: dict[str, Any]) -> dict[str, Any] | None:
    """The best path of `show ip bgp PREFIX json`."""
    for path in detail.get("paths", []):
        best = path.get("bestpath")
        if isinstance(best, dict) and best.get("overall"):
            return dict(path)
    return None


class FrrRouter(DaemonRouter):
    """FRR in a namespace; see the module docstring."""

    kind = "frr"

    @property
    def log_path(self) -> Path:
        return self.spec.workdir / "bgpd.log"

    def _daemon(self, name: str) -> list[str]:
        d = self.spec.workdir
        return [
            str(FRR_BIN / name),
            *("-f", str(d / f"{name}.conf"), "-i", str(d / f"{name}.pid")),
            *("--vty_socket", str(d), "-u", "root", "-g", "frrvty"),
        ]

    def _start(self) -> None:
        d = self.spec.workdir
        zserv = d / "zserv.api"
        for stale in ("bgpd.vty", "zebra.vty", "zserv.api"):
            (d / stale).unlink(missing_ok=True)
        (d / "bgpd.conf").write_text(render_bgpd(self.spec))
        if self.spec.role == "upstream":
            (d / "zebra.conf").write_text(render_zebra(self.spec))
            self.launch([*self._daemon("zebra"), "-z", str(zserv)], d / "zebra.log")
            self.wait_ready(zserv.exists, f"zebra's socket {zserv}")
            self.launch([*self._daemon("bgpd"), "-z", str(zserv)], self.log_path)
        else:
            self.launch([*self._daemon("bgpd"), "-Z"], self.log_path)
        self.wait_ready(self._answers, f"bgpd answering on {d / 'bgpd.vty'}")

    def stop(self) -> None:
        """Stop the daemons, then remove their empty crash-log directories, which FRR
        cannot remove itself once it dropped its capabilities."""
        pids = self.pids()
        super().stop()
        for pid in pids:
            for name in ("bgpd", "zebra"):
                with contextlib.suppress(OSError):
                    (CRASH_DIR / f"{name}.{pid}").rmdir()

    def _answers(self) -> bool:
        if not (self.spec.workdir / "bgpd.vty").exists():
            return False
        try:
            self.vtysh("show bgp summary json")
        except Exception:
            return False
        return True

    def vtysh(self, command: str) -> Any:
        """One vtysh show command against this instance's bgpd, as parsed JSON."""
        argv = ["vtysh", "--vty_socket", str(self.spec.workdir), "-d", "bgpd", "-c", command]
        out = self.run(argv, f"vtysh -c '{command}'")
        try:
            return json.loads(out or "{}")
        except ValueError:
            raise self.fail(f"vtysh -c '{command}' printed no JSON: {out[:200]!r}") from None

    def routes(self) -> dict[str, list[str]]:
        return frr_best(self.vtysh("show ip bgp json"))

    def received_from(self, neighbor_address: str) -> list[str]:
        neighbor(self.spec, neighbor_address)
        table = self.vtysh(f"show ip bgp neighbors {neighbor_address} routes json")
        return sorted(table.get("routes", {}))

    def neighbor_state(self, address: str) -> str:
        neighbor(self.spec, address)
        info = self.vtysh(f"show bgp neighbors {address} json").get(address, {})
        return str(info.get("bgpState", "down")).lower()

    def _best(self, prefix: str) -> dict[str, Any]:
        path = frr_best_path(self.vtysh(f"show ip bgp {prefix} json"))
        if path is None:
            raise self.fail(f"no route for {prefix}")
        return path

    def communities(self, prefix: str) -> list[str]:
        text = self._best(prefix).get("community", {}).get("string", "")
        return sorted_communities(text.split())

    def as_path(self, prefix: str) -> list[int]:
        text = self._best(prefix).get("aspath", {}).get("string", "")
        return [int(a) for a in text.replace("{", " ").replace("}", " ").split() if a.isdigit()]
