"""LoadBalancer IPs in the daemon: allocated from the config's pools, announced and put
on the loopback only where served, never one the network already routes."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from bgpd.bgp.events import PathAttributes, RoutesUpdate
from bgpd.config.model import parse_config
from bgpd.daemon import Daemon
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import FakeSpeaker, StartDaemon, cluster_data, settle

UPSTREAM = ipaddress.IPv4Address("10.0.0.254")
POOL = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/29"}]}


def service(nodes: list[str], name: str = "www") -> dict[str, Any]:
    return {"namespace": "web", "name": name, "nodes": nodes}


@pytest.fixture
async def daemon_with(tmp_path: Path, start_daemon: StartDaemon) -> Any:
    async def make(services: list[dict[str, Any]]) -> Daemon:
        data = cluster_data(tmp_path)
        data["loadBalancer"] = {"pools": [POOL], "services": services}
        data["bgp"]["peers"] = [
            {"address": str(UPSTREAM), "asn": 65000, "import": {"allow": ["198.51.100.0/24"]}}
        ]
        return await start_daemon(data)

    return make


def speaker(daemon: Daemon) -> FakeSpeaker:
    assert isinstance(daemon.speaker, FakeSpeaker)
    return daemon.speaker


async def test_served_here_is_announced_and_on_the_loopback(daemon_with: Any) -> None:
    daemon = await daemon_with([service(["node-a"])])
    ip = ipaddress.ip_address("198.51.100.1")
    assert await settle(lambda: ipaddress.ip_network(f"{ip}/32") in speaker(daemon).advertised)
    assert isinstance(daemon.loopback, FakeLoopback)
    assert await settle(lambda: daemon.loopback.addresses == {ip})
    assert daemon.local_prefixes[ipaddress.ip_network(f"{ip}/32")] == "loadBalancerIP"


async def test_served_elsewhere_is_neither_announced_nor_on_the_loopback(
    daemon_with: Any,
) -> None:
    daemon = await daemon_with([service(["node-b"])])
    await settle(lambda: daemon.lb.view is not None)
    assert daemon.lb.view is not None and daemon.lb.view.served == ()
    assert not any(p.prefixlen == 32 for p in speaker(daemon).advertised)
    assert daemon.loopback.addresses == set()


async def test_an_address_the_network_routes_is_not_handed_out(daemon_with: Any) -> None:
    daemon = await daemon_with([])
    route = RoutesUpdate(
        peer=UPSTREAM,
        announced=((ipaddress.ip_network("198.51.100.1/32"), PathAttributes(UPSTREAM)),),
    )
    speaker(daemon).emit(route)
    await settle(lambda: bool(daemon.rib.paths()))
    data = daemon.config.model_dump(by_alias=True, mode="json")
    data["loadBalancer"]["services"] = [service(["node-a"])]
    daemon.reconfigure(parse_config(data, host_defaults=True))
    assert await settle(lambda: daemon.lb.view is not None and daemon.lb.view.served != ())
    assert daemon.lb.view is not None
    assert daemon.lb.view.served == (ipaddress.ip_address("198.51.100.2"),)


async def test_pool_age_comes_from_the_store_and_survives_restarts(tmp_path: Path) -> None:
    from bgpd.config.stores import parse_lb_pools
    from bgpd.lb.allocation import LoadBalancers
    from tests.fakes.lb_store import MemoryLbStore

    store, pools = MemoryLbStore(), parse_lb_pools([POOL])

    async def node(name: str, now: float) -> LoadBalancers:
        lb = LoadBalancers(tmp_path / name / "lbipam.json", name)
        lb.configure(pools, [], ["node-a", "node-b"])
        lb.set_in_use(())
        lb.accept(await store.transact(lb.round_step(now)))
        return lb

    first = await node("node-a", 1000.0)
    later = await node("node-b", 5000.0)  # another node, much later: same creation time
    again = await node("node-a", 9000.0)  # and a restart
    for lb in (first, later, again):
        assert lb.view is not None and [p.created for p in lb.view.round.pools] == [1000.0]


def test_only_routes_touching_a_pool_start_an_allocation_round(tmp_path: Path) -> None:
    """An upstream's churn elsewhere must not run a store transaction per reconcile."""
    from bgpd.config.stores import parse_lb_pools
    from bgpd.lb.allocation import LoadBalancers

    lb = LoadBalancers(tmp_path / "lbipam.json", "node-a")
    rounds: list[None] = []
    lb.on_inputs = lambda: rounds.append(None)
    lb.configure(parse_lb_pools([POOL]), [], ["node-a"])
    far = [ipaddress.ip_network(f"10.1.{i}.0/24") for i in range(100)]
    lb.set_in_use(far)
    assert len(rounds) == 1  # the config
    lb.set_in_use(far[:50])
    assert len(rounds) == 1 and lb.in_use == frozenset(far[:50])  # the next round sees it
    lb.set_in_use([*far[:50], ipaddress.ip_network("198.51.100.3/32")])
    assert len(rounds) == 2
    lb.set_in_use([ipaddress.ip_network("198.51.100.3/32")])
    assert len(rounds) == 2
