"""The effective config: allocation and membership filled into the file's config."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from bgpd.bgp.peers import cluster_prefixes, resolve_peers
from bgpd.cluster.membership import Member
from bgpd.cluster.state import ClusterState, effective_config, visible_members
from bgpd.config.model import Config, parse_config
from common.errors import KrouteError

POOL = "10.240.0.0/16"


def pool_config(tmp_path: Path, source: str = "static", **extra: Any) -> Config:
    data: dict[str, Any] = {
        "node": {"name": "a", "ip": "10.0.0.1"},
        "bgp": {"asn": 64512},
        "ipam": {
            "mode": "cluster-pool",
            "clusterPool": {"cidrs": [POOL], "maskSizeV4": 24},
            "file": str(tmp_path / "ipam.json"),
        },
        "runDir": str(tmp_path / "run"),
        "status": {"listen": "", "socket": str(tmp_path / "sock")},
    }
    if source == "static":
        data["cluster"] = {
            "nodes": [{"name": "a", "ip": "10.0.0.1"}, {"name": "b", "ip": "10.0.0.2"}]
        }
    else:
        data["cluster"] = {"source": "etcd"}
        data["etcd"] = {"endpoints": ["http://127.0.0.1:2379"]}
    data.update(extra)
    return parse_config(data, host_defaults=True)


def test_static_nodes_get_our_blocks_and_peers_accept_the_pool(tmp_path: Path) -> None:
    base = pool_config(tmp_path)
    block = ipaddress.ip_network("10.240.3.0/24")
    config = effective_config(base, (block,), {})
    me = config.self_node()
    assert me is not None and me.pod_cidrs == (block,)
    assert [p.name for p in resolve_peers(config)] == ["b"]
    assert ipaddress.ip_network(POOL) in cluster_prefixes(config)


def test_etcd_members_become_the_cluster(tmp_path: Path) -> None:
    base = pool_config(tmp_path, source="etcd")
    members = {
        "b": Member("b", "10.0.0.2", "10.0.0.2", 64512, ("10.240.1.0/24",)),
        "c": Member("c", "10.0.0.3", "10.0.0.3", 64512, ("10.240.2.0/24",)),
    }
    config = effective_config(base, (ipaddress.ip_network("10.240.0.0/24"),), members)
    assert sorted(n.name for n in config.cluster.nodes) == ["a", "b", "c"]
    assert [str(p.address) for p in resolve_peers(config)] == ["10.0.0.2", "10.0.0.3"]


async def test_blocks_are_allocated_cached_and_survive_a_lost_store(tmp_path: Path) -> None:
    base = pool_config(tmp_path)
    (tmp_path / "run").mkdir()
    state = ClusterState(base)
    config = await state.start()
    me = config.self_node()
    assert me is not None and me.pod_cidrs == (ipaddress.ip_network("10.240.0.0/24"),)
    report = await state.report()
    assert report["usage"] == ["IPv4: 0/254 allocated from 10.240.0.0/24"]
    await state.close()
    (tmp_path / "ipam.json").write_text("{ not json")  # the store is broken now
    again = ClusterState(base)
    config = await again.start()  # the cached blocks carry it
    me = config.self_node()
    assert me is not None and me.pod_cidrs == (ipaddress.ip_network("10.240.0.0/24"),)
    assert "ipam.json" in again.store_error
    await again.close()


async def test_no_store_and_no_cache_refuses_to_start(tmp_path: Path) -> None:
    base = pool_config(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "ipam.json").write_text("{ not json")
    state = ClusterState(base)
    with pytest.raises(KrouteError, match="no pod CIDR for a"):
        await state.start()
    await state.close()


def test_our_reflector_cluster_id_survives(tmp_path: Path) -> None:
    base = pool_config(tmp_path)
    data = base.model_dump(by_alias=True, mode="json")
    data["cluster"]["nodes"][0]["routeReflectorClusterId"] = "1.1.1.1"
    base = parse_config(data, host_defaults=True)
    config = effective_config(base, (ipaddress.ip_network("10.240.3.0/24"),), {})
    me = config.self_node()
    assert me is not None
    assert str(me.route_reflector_cluster_id) == "1.1.1.1"
    assert me.pod_cidrs == (ipaddress.ip_network("10.240.3.0/24"),)


def _member(name: str, ip: str) -> Member:
    return Member(name=name, ip=ip, router_id=ip, asn=64512)


def test_members_whose_record_vanished_stay_while_their_session_is_up() -> None:
    """A store outage expires every lease; a node gone for real loses its session too."""
    a, b, c = _member("a", "10.0.0.1"), _member("b", "10.0.0.2"), _member("c", "10.0.0.3")
    previous = {"a": a, "b": b, "c": c}
    up = {"10.0.0.2"}
    kept = visible_members({"a": a}, previous, lambda ip: ip in up)
    assert kept == {"a": a, "b": b}  # c's session is down: it goes
    assert visible_members({"a": a}, kept, lambda ip: False) == {"a": a}
    newer = _member("b", "10.0.0.22")  # the store's record wins over a kept one
    assert visible_members({"a": a, "b": newer}, kept, lambda ip: True) == {"a": a, "b": newer}


class RefusingFollower:
    """A daemon whose first reconfigure is refused (a password file gone, say)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.refusals = 1

    def reconfigure(self, config: Config) -> None:
        if self.refusals:
            self.refusals -= 1
            raise ValueError("passwordFile /etc/kroute/md5: cannot read: Permission denied")
        self.config = config

    def session_held(self, ip: str) -> bool:
        return False


def test_a_refused_membership_change_is_tried_again(tmp_path: Path) -> None:
    """The members stay as the daemon runs them until it takes the change: a refused
    one neither stops the watch nor is forgotten."""
    state = ClusterState(pool_config(tmp_path, source="etcd"))
    daemon = RefusingFollower(state.effective())
    state.watched = {"b": _member("b", "10.0.0.2")}
    state._apply(daemon)  # type: ignore[arg-type]
    assert state.members == {} and daemon.refusals == 0
    state._apply(daemon)  # type: ignore[arg-type]
    assert set(state.members) == {"b"}
    assert sorted(n.name for n in daemon.config.cluster.nodes) == ["a", "b"]
