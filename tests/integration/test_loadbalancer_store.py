"""LoadBalancer pools and services from the cluster store, driven with the CLI against
the lab's running daemons (file store and real etcd), with a real BIRD upstream:
`kroute pool apply` on one node and `kroute service apply` on another, the upstream has
the serving nodes as next hops, other nodes route the /32 to the serving nodes, two nodes
applying at once never share an IP, a restart keeps it, a bad file is refused, and
`kroute pool delete` withdraws it."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import Any

import pytest

from bgpd.api.client import call
from bgpd.cli.main import main
from lab import lab as labmod
from tests.integration.conftest import LabFactory
from tests.integration.test_loadbalancer import upstream_hops
from tests.watch import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp, pytest.mark.peers]

POOL = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/28"}]}


def kroute(*args: str) -> int:
    return main(list(args))


def write(path: Path, docs: Any) -> str:
    path.write_text(json.dumps(docs))
    return str(path)


def service_ips(socket: str) -> dict[str, list[str]]:
    return {s["service"]: s["ips"] for s in call(socket, "/services")}


@pytest.mark.parametrize("store", ["file", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_pool_and_service_applied_with_the_cli(
    make_lab: LabFactory, tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = make_lab(3, upstream="bird", store=store)
    n1, n2, n3 = lab.plan.nodes
    bad = {"name": "bad", "blocks": [{"cidr": "198.51.100.1/28"}]}
    assert kroute("pool", "apply", "-f", write(tmp_path / "bad.json", [POOL, bad]),
                  "--socket", n1.socket_path) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "pool bad.blocks[0].cidr: '198.51.100.1/28' has host bits set" in err, err
    assert call(n2.socket_path, "/pools") == []  # the whole file was refused

    assert kroute("pool", "apply", "-f", write(tmp_path / "p.json", POOL),
                  "--socket", n1.socket_path) == 0  # fmt: skip
    www = {"namespace": "web", "name": "www", "nodes": [n1.name, n2.name]}
    assert kroute("service", "apply", "-f", write(tmp_path / "s.json", www),
                  "--socket", n3.socket_path) == 0  # fmt: skip
    assert "service web/www created" in capsys.readouterr().out
    prefix = "198.51.100.1/32"
    wait_for(lambda: upstream_hops(lab, prefix) == sorted([n1.ip, n2.ip]), 30, "two hops")
    for node in lab.plan.nodes:  # every node agrees, and the pool's AGE is the store's
        wait_for(lambda n=node: service_ips(n.socket_path) == {"web/www": ["198.51.100.1"]}, 15,  # type: ignore[misc]
                 f"{node.name} to see the service")  # fmt: skip
    ages = {round(p["created"], 3) for n in lab.plan.nodes for p in call(n.socket_path, "/pools")}
    assert len(ages) == 1
    green = {"name": "green", "blocks": [{"start": "198.51.100.8", "stop": "198.51.100.40"}]}
    assert kroute("pool", "apply", "-f", write(tmp_path / "g.json", green),
                  "--socket", n2.socket_path) == 0  # fmt: skip

    def conflicts() -> dict[str, Any]:
        return {p["name"]: p["conflictingWith"] for p in call(n3.socket_path, "/pools")}

    wait_for(lambda: conflicts() == {"blue": None, "green": "blue"}, 15, "green to conflict")

    # n3 serves nothing: it routes the /32 to the serving nodes itself, store pools being
    # in the nodes' iBGP import like config pools (docs/loadbalancer.md: Announcing).
    def n3_hops() -> list[str]:
        routes = call(n3.socket_path, "/status")["kernelRoutes"]
        return sorted(h for r in routes if r["prefix"] == prefix for h in r["nexthops"])

    wait_for(lambda: n3_hops() == sorted([n1.ip, n2.ip]), 15, "n3 to route it to n1 and n2")

    # Two nodes applying at the same moment: two services, two addresses.
    racers = [(n1, "a"), (n3, "b")]
    files = [write(tmp_path / f"{n}.json", {"namespace": "web", "name": n}) for _, n in racers]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda args: kroute("service", "apply", "-f", args[1],
                                                  "--socket", args[0].socket_path),
                              zip((n for n, _ in racers), files, strict=True)))  # fmt: skip
    assert codes == [0, 0]

    def three_distinct() -> bool:
        ips = service_ips(n2.socket_path)
        held = [ip for v in ips.values() for ip in v]
        return len(ips) == 3 and len(held) == 3

    wait_for(three_distinct, 15, "three services with an address each")
    before = service_ips(n2.socket_path)
    assert len({ip for v in before.values() for ip in v}) == 3

    labmod.restart(lab, n2.name, kill=False, timeout=60, say=lambda _: None)
    assert service_ips(n2.socket_path) == before
    wait_for(lambda: upstream_hops(lab, prefix) == sorted([n1.ip, n2.ip]), 30, "hops back")

    assert kroute("pool", "delete", "blue", "--socket", n2.socket_path) == 0
    wait_for(lambda: not upstream_hops(lab, prefix), 30, "the route to go")
    # green no longer overlaps an older pool: it serves now (web/a and web/b sort first)
    moved = "198.51.100.10/32"
    wait_for(lambda: service_ips(n1.socket_path)["web/www"] == ["198.51.100.10"], 15, "green")
    wait_for(lambda: upstream_hops(lab, moved) == sorted([n1.ip, n2.ip]), 30, "green's hops")
    assert kroute("pool", "delete", "green", "--socket", n3.socket_path) == 0
    wait_for(lambda: not upstream_hops(lab, moved), 30, "green's route to go")
    reasons = {s["service"]: s["reasons"] for s in call(n1.socket_path, "/services")}
    assert any("NoMatchingPool" in r for r in reasons["web/www"]), reasons
    assert kroute("pool", "delete", "blue", "--socket", n2.socket_path) == 1
    assert "not in the store" in capsys.readouterr().err
