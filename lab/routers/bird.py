"""BIRD 2 as an upstream (eBGP, kernel routes with ECMP) or a route reflector.

`bird -f -c bird.conf -s bird.ctl -P bird.pid` runs in the foreground in the namespace;
`birdc -s bird.ctl` reaches it through its socket from anywhere, so queries need no
nsenter. Originated prefixes are `unreachable` static routes exported to BGP only, never
to the kernel (the upstream's own connected route to that subnet stays in charge); their
preference 250 beats a connected route's 240, as BGP exports only a prefix's best route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.routers.base import (
    HOLD_TIME,
    KEEPALIVE,
    RESTART_TIME,
    DaemonRouter,
    NeighborConf,
    RouterSpec,
    neighbor,
    sorted_communities,
)


def protocol_name(address: str) -> str:
    """BIRD protocol names allow no dots: 172.31.0.1 -> n172_31_0_1."""
    return "n" + address.replace(".", "_")


def render_bird(spec: RouterSpec) -> str:
    """bird.conf for `spec`: device/direct for next-hop resolution, BGP per neighbor."""
    lines = [
        f"# kroute lab: BIRD {spec.role} {spec.router_id} AS {spec.asn} in {spec.netns}",
        f'log "{spec.workdir / "bird.log"}" all;',
        f"router id {spec.router_id};",
        "protocol device {}",
        "protocol direct { ipv4; }",
    ]
    if spec.role == "upstream":
        lines.append(
            "protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n"
            "  merge paths on limit 16;\n}"
        )
    if spec.originate:
        routes = "".join(f"  route {p} unreachable;\n" for p in spec.originate)
        lines.append(
            "protocol static static_originate {\n  ipv4 { preference 250; };\n" + routes + "}"
        )
    lines += [_bird_neighbor(spec, n) for n in spec.neighbors]
    return "\n".join(lines) + "\n"


def _bird_neighbor(spec: RouterSpec, n: NeighborConf) -> str:
    opts = [
        f"local as {spec.asn};",
        f"neighbor {n.address} as {n.asn};",
        f"multihop {n.multihop};" if n.multihop else "direct;",
        f"hold time {HOLD_TIME};",
        f"keepalive time {KEEPALIVE};",
        "connect delay time 1;",
        "connect retry time 2;",
        "error wait time 1, 10;",
        "graceful restart on;",
        f"graceful restart time {RESTART_TIME};",
    ]
    if n.password is not None:
        opts.append(f'password "{n.password}";')
    if n.rr_client:
        opts.append("rr client;")
    opts.append("ipv4 { import all; export where source ~ [RTS_BGP, RTS_STATIC]; };")
    body = "".join(f"  {o}\n" for o in opts)
    return f"protocol bgp {protocol_name(n.address)} {{\n{body}}}"


@dataclass
class BirdRoute:
    """One route of `birdc show route all`: enough to pick best and ECMP paths."""

    prefix: str
    proto: str
    best: bool
    pref: int
    kind: str = ""
    nexthops: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)

    def merge_key(self) -> tuple[object, ...]:
        """What BIRD's `merge paths` compares (as-path length, not content)."""
        path_len = len(self.attrs.get("BGP.as_path", "").split())
        return (
            self.pref,
            self.attrs.get("BGP.local_pref"),
            path_len,
            self.attrs.get("BGP.origin"),
            self.attrs.get("BGP.med"),
        )


_HEAD = re.compile(
    r"^(?P<prefix>\S+)?\s+(?:unicast|unreachable|blackhole|prohibit)\s+"
    r"\[(?P<proto>\S+)[^\]]*\]\s*(?P<best>\*)?\s*\((?P<pref>\d+)\)"
)


def parse_bird_routes(text: str) -> list[BirdRoute]:
    """The routes of `show route all` output, in order."""
    routes: list[BirdRoute] = []
    prefix = ""
    for line in text.splitlines():
        head = _HEAD.match(line)
        if head:
            prefix = head["prefix"] or prefix
            routes.append(BirdRoute(prefix, head["proto"], bool(head["best"]), int(head["pref"])))
        elif routes and line.startswith("\t"):
            item = line.strip()
            route = routes[-1]
            if item.startswith("via "):
                route.nexthops.append(item.split()[1])
            elif item.startswith("Type: "):
                route.kind = item.split()[1]
            elif ": " in item:
                key, value = item.split(": ", 1)
                route.attrs[key] = value
    return routes


def bird_best(routes: list[BirdRoute], multipath: bool) -> dict[str, list[str]]:
    """prefix -> next hops of the BGP/static best route, plus mergeable BGP routes."""
    found: dict[str, list[str]] = {}
    for best in routes:
        if not best.best or best.kind not in ("BGP", "static"):
            continue
        hops = set(best.nexthops) if best.kind == "BGP" else set()
        if multipath and best.kind == "BGP":
            key = best.merge_key()
            for other in routes:
                same = other.prefix == best.prefix and other.kind == "BGP"
                if same and other.merge_key() == key:
                    hops.update(other.nexthops)
        found[best.prefix] = sorted(hops)
    return found


class BirdRouter(DaemonRouter):
    """BIRD 2 in a namespace; see the module docstring."""

    kind = "bird"

    @property
    def conf_path(self) -> Path:
        return self.spec.workdir / "bird.conf"

    @property
    def socket_path(self) -> Path:
        return self.spec.workdir / "bird.ctl"

    def _start(self) -> None:
        self.conf_path.write_text(render_bird(self.spec))
        self.socket_path.unlink(missing_ok=True)
        argv = ["bird", "-f", "-c", str(self.conf_path), "-s", str(self.socket_path)]
        self.launch([*argv, "-P", str(self.spec.workdir / "bird.pid")], self.log_path)
        self.wait_ready(self._answers, f"birdc answering on {self.socket_path}")

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            self.birdc("show status")
        except Exception:
            return False
        return True

    def birdc(self, command: str) -> str:
        return self.run(["birdc", "-s", str(self.socket_path), command], f"birdc {command}")

    def _routes(self, command: str = "show route all") -> list[BirdRoute]:
        return parse_bird_routes(self.birdc(command))

    def routes(self) -> dict[str, list[str]]:
        return bird_best(self._routes(), multipath=self.spec.role == "upstream")

    def received_from(self, neighbor_address: str) -> list[str]:
        neighbor(self.spec, neighbor_address)
        routes = self._routes(f"show route all protocol {protocol_name(neighbor_address)}")
        return sorted({r.prefix for r in routes})

    def neighbor_state(self, address: str) -> str:
        neighbor(self.spec, address)
        out = self.birdc(f"show protocols all {protocol_name(address)}")
        state = re.search(r"BGP state:\s+(\S+)", out)
        return state[1].lower() if state else "down"

    def _best(self, prefix: str) -> BirdRoute:
        for route in self._routes(f"show route all for {prefix}"):
            if route.best and route.prefix == prefix:
                return route
        raise self.fail(f"no route for {prefix}")

    def communities(self, prefix: str) -> list[str]:
        text = self._best(prefix).attrs.get("BGP.community", "")
        return sorted_communities([f"{a}:{b}" for a, b in re.findall(r"\((\d+),\s*(\d+)\)", text)])

    def as_path(self, prefix: str) -> list[int]:
        text = self._best(prefix).attrs.get("BGP.as_path", "")
        return [int(asn) for asn in re.findall(r"\d+", text)]
