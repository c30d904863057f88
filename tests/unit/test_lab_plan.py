"""The lab's pure parts: address plan, configs, lab.json form, convergence check, PIDs,
and nodes joining and leaving the plan."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.config.model import parse_config
from lab import health, lab, net, procs
from lab.plan import (
    LabError,
    LabPlan,
    check_name,
    lowest_free_index,
    plan_added_node,
    plan_lab,
    plan_removed_node,
    with_allocations,
)
from lab.render import render_config
from lab.state import plan_from_dict, plan_to_dict
from lab.subnets import other_half


def allocated(plan: LabPlan) -> LabPlan:
    """`plan` with the blocks the store hands out in node order (/24s from the bottom)."""
    octet = 200 + plan.index
    return with_allocations(
        plan,
        {n.name: (f"10.{octet}.{i}.0/24", f"10.{octet}.{i}.1") for i, n in enumerate(plan.nodes)},
    )


def test_plan_addresses_follow_index_and_node_number() -> None:
    plan = plan_lab("kr", 4, 3, root=Path("/tmp/labs"))
    assert (plan.subnet, plan.pod_range, plan.lan_ns) == (
        "172.31.4.0/24",
        "10.204.0.0/16",
        "kr-lan",
    )
    n2 = plan.nodes[1]
    assert (n2.name, n2.netns, n2.ip) == ("kr-n2", "kr-n2", "172.31.4.2")
    assert (n2.pod_cidr, n2.pod_ns, n2.pod_ip) == ("", "kr-n2-p1", "")  # from the store
    assert n2.container_id == "lab-kr-n2-p1"
    assert plan.ipam_file == "/tmp/labs/kr/ipam.json"
    assert n2.socket_path == "/tmp/labs/kr/kr-n2/kroute.sock"
    assert plan.namespaces() == [
        *(f"kr-n{i}-p1" for i in (1, 2, 3)),
        *(f"kr-n{i}" for i in (1, 2, 3)),
        "kr-lan",
    ]


def test_interface_names_do_not_grow_with_the_lab_name() -> None:
    plan = plan_lab("abcdefghijkl", 0, 32)
    assert all(len(n.lan_if) <= 15 for n in plan.nodes)


def test_two_indexes_never_overlap() -> None:
    a, b = plan_lab("a", 0, 3), plan_lab("b", 1, 3)
    assert a.subnet != b.subnet and a.pod_range != b.pod_range


@pytest.mark.parametrize("name", ["kr", "e2e1a2b", "a", "lab-2"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "Kr", "2lab", "lab-", "a_b", "abcdefghijklm", "a/b"])
def test_bad_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(LabError, match="use 1-12 characters"):
        check_name(name)


def test_node_count_and_index_are_bounded() -> None:
    with pytest.raises(LabError, match="--nodes 0"):
        plan_lab("kr", 0, 0)
    with pytest.raises(LabError, match="index 56"):
        plan_lab("kr", 56, 3)


def test_lowest_free_index() -> None:
    assert lowest_free_index(set()) == 0
    assert lowest_free_index({0, 1, 3}) == 2
    with pytest.raises(LabError, match="kroute lab down"):
        lowest_free_index(set(range(56)))


def test_node_lookup_by_name_or_short_name() -> None:
    plan = plan_lab("kr", 0, 3)
    assert plan.node("kr-n2") is plan.node("n2") is plan.nodes[1]
    with pytest.raises(LabError, match="kr-n1, kr-n2, kr-n3"):
        plan.node("kr-n9")


def test_rendered_config_is_valid_and_names_the_whole_mesh() -> None:
    plan = plan_lab("kr", 2, 3)
    node = plan.nodes[0]
    config = parse_config(yaml.safe_load(render_config(plan, node)))
    assert config.node.name == "kr-n1" and str(config.node.ip) == "172.31.2.1"
    assert [str(p.ip) for p in config.peers()] == ["172.31.2.2", "172.31.2.3"]
    assert [n.pod_cidrs for n in config.cluster.nodes] == [(), (), ()]  # the pool's job
    assert config.cluster.source == "static"
    assert (config.ipam.mode, config.ipam.store, config.ipam.file) == (
        "cluster-pool",
        "file",
        "/run/kroute/lab/kr/ipam.json",
    )
    assert config.ipam.cluster_pool is not None
    assert [str(c) for c in config.ipam.cluster_pool.cidrs] == ["10.202.0.0/16"]
    assert config.ipam.cluster_pool.mask_size_v4 == 24
    assert config.etcd is None
    assert config.bgp.hold_time == 9 and config.bgp.graceful_restart.restart_time == 9
    assert config.status.socket == node.socket_path
    assert config.status.listen == "172.31.2.1:9479"
    assert config.run_dir == node.run_dir


def test_etcd_lab_config_has_no_node_list_and_a_short_lease() -> None:
    plan = plan_lab("kr", 5, 3, store="etcd")
    assert plan.namespaces()[-2:] == ["kr-etcd", "kr-lan"]
    data = yaml.safe_load(render_config(plan, plan.nodes[1]))
    assert data["cluster"] == {"source": "etcd", "leaseTTL": 3}
    assert data["etcd"] == {"endpoints": ["http://172.31.5.253:2379"]}
    config = parse_config(data)
    assert config.ipam.store == "etcd" and config.cluster.nodes == ()
    assert str(config.node.ip) == "172.31.5.2"
    with pytest.raises(LabError, match="--store 'consul' is unknown"):
        plan_lab("kr", 0, 2, store="consul")
    with pytest.raises(LabError, match="--reflectors needs --store file"):
        plan_lab("kr", 0, 2, store="etcd", reflectors=1)


def test_two_subnets_split_the_underlay_and_run_the_overlay() -> None:
    plan = plan_lab("kr", 5, 3, store="etcd", subnets=2, overlay="crossSubnet")
    assert [n.ip for n in plan.nodes] == ["172.31.5.1", "172.31.5.130", "172.31.5.3"]
    assert plan_added_node(plan).nodes[-1].ip == "172.31.5.132"  # even: subnet B
    assert plan.namespaces()[-3:] == ["kr-etcd", "kr-rt", "kr-lan"]
    assert other_half(5, "172.31.5.3") == ("172.31.5.128/25", "172.31.5.126")
    assert other_half(5, "172.31.5.253") == ("172.31.5.0/25", "172.31.5.252")
    data = yaml.safe_load(render_config(plan, plan.nodes[1]))
    assert data["routing"] == {
        "mode": "vxlan", "overlay": "crossSubnet", "nativeRoutingCIDR": "10.205.0.0/16"
    }  # fmt: skip
    assert parse_config(data).routing.overlay == "crossSubnet"
    assert plan_from_dict(plan_to_dict(plan)) == plan
    with pytest.raises(LabError, match="--subnets 2 needs --overlay crossSubnet or always"):
        plan_lab("kr", 0, 2, subnets=2)
    with pytest.raises(LabError, match="--upstream needs --subnets 1"):
        plan_lab("kr", 0, 2, subnets=2, overlay="always", upstream="bird")
    with pytest.raises(LabError, match="--overlay 'sometimes' is unknown"):
        plan_lab("kr", 0, 2, overlay="sometimes")


def test_allocations_fill_the_plan() -> None:
    plan = allocated(plan_lab("kr", 1, 2))
    assert [(n.pod_cidr, n.pod_ip) for n in plan.nodes] == [
        ("10.201.0.0/24", "10.201.0.1"),
        ("10.201.1.0/24", "10.201.1.1"),
    ]
    with pytest.raises(LabError, match="no node 'kr-n9'"):
        with_allocations(plan, {"kr-n9": ("10.201.9.0/24", "10.201.9.1")})


def test_added_node_takes_the_next_number_and_joins_the_static_list() -> None:
    plan = plan_added_node(allocated(plan_lab("kr", 0, 3)))
    new = plan.nodes[-1]
    assert (new.name, new.ip, new.pod_ns, new.lan_if, new.pod_cidr) == (
        "kr-n4", "172.31.0.4", "kr-n4-p1", "n4", "",
    )  # fmt: skip
    assert plan.nodes[0].pod_cidr == "10.200.0.0/24"  # the others keep their allocation
    config = parse_config(yaml.safe_load(render_config(plan, plan.nodes[0])))
    assert [n.name for n in config.peers()] == ["kr-n2", "kr-n3", "kr-n4"]
    shrunk = plan_removed_node(plan, "n2")
    assert [n.name for n in shrunk.nodes] == ["kr-n1", "kr-n3", "kr-n4"]
    assert plan_added_node(shrunk).nodes[-1].name == "kr-n5"  # numbers are not reused


def test_node_changes_that_are_refused_say_why() -> None:
    with pytest.raises(LabError, match="last node"):
        plan_removed_node(plan_lab("kr", 0, 1), "kr-n1")
    with pytest.raises(LabError, match="route reflector"):
        plan_removed_node(plan_lab("kr", 0, 3, reflectors=1), "kr-n1")
    with pytest.raises(LabError, match="upstream router"):
        plan_added_node(plan_lab("kr", 0, 2, upstream="bird"))
    with pytest.raises(LabError, match="already has 32 nodes"):
        plan_added_node(plan_lab("kr", 0, 32))


def test_state_round_trips() -> None:
    plan = plan_lab("kr", 7, 2)
    assert plan_from_dict(plan_to_dict(plan)) == plan
    full = allocated(plan_lab("kr", 7, 2, store="etcd"))
    data = plan_to_dict(full)
    assert data["store"]["url"] == "http://172.31.7.253:2379"
    assert data["nodes"][1]["podIP"] == "10.207.1.1"
    assert plan_to_dict(plan)["nodes"][0]["podCIDR"] is None
    assert plan_from_dict(data) == full
    with pytest.raises(LabError, match="bad field"):
        plan_from_dict({"name": "kr"})


def _status(plan: Any, me: int, state: str = "established", stale: bool = False) -> dict[str, Any]:
    others = [n for n in plan.nodes if n.index != me]
    return {
        "peers": [{"address": n.ip, "state": state, "info": "x"} for n in others],
        "kernelRoutes": [
            {"prefix": n.pod_cidr, "nexthops": [n.ip], "type": "unicast", "stale": stale}
            for n in others
        ],
    }


def test_converged_node_has_no_problems() -> None:
    plan = allocated(plan_lab("kr", 0, 3))
    assert health.problems(plan, plan.nodes[0], _status(plan, 1)) == []
    assert health.established(_status(plan, 1)) == 2


def test_problems_name_the_node_and_peer() -> None:
    plan = allocated(plan_lab("kr", 0, 3))
    n1 = plan.nodes[0]
    found = health.problems(plan, n1, _status(plan, 1, state="connect"))
    assert found[0] == "node kr-n1: peer kr-n2 (172.31.0.2) is connect (x)"
    assert health.problems(plan, n1, _status(plan, 1, stale=True))[0].endswith("still stale")
    missing = health.problems(plan, n1, {"peers": [], "kernelRoutes": []})
    assert "node kr-n1: peer kr-n3 (172.31.0.3) is not configured" in missing
    assert "node kr-n1: no route to kr-n3's pods 10.200.2.0/24" in missing


def test_namespaces_by_pattern_skip_other_labs(tmp_path: Path, monkeypatch: Any) -> None:
    for ns in ["a-lan", "a-n1", "a-n1-p1", "a-n1-lan", "a-n1-n1", "ab-n1", "a-n2-p2", "a-etcd"]:
        (tmp_path / ns).touch()
    monkeypatch.setattr(net, "NETNS_DIR", tmp_path)
    assert lab._namespaces_by_pattern("a") == ["a-n1-p1", "a-etcd", "a-n1", "a-lan"]


def test_recorded_process_is_alive_until_stopped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = procs.observe(child.pid)
        assert proc is not None and procs.is_alive(proc)
        assert not procs.is_alive(procs.Proc(proc.pid, proc.start + 1))  # a reused PID
        assert procs.stop_tree(proc, signal.SIGTERM, 5.0) == procs.Stopped([], [])
        assert not procs.is_alive(proc)
    finally:
        child.kill()
        child.wait()


def test_stop_tree_kills_descendants_that_ignore_sigterm() -> None:
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        proc = procs.observe(child.pid)
        assert proc is not None
        for _ in range(50):
            if procs.descendants(proc):
                break
            procs.wait_gone([proc], 0.1)
        tree = [proc, *procs.descendants(proc)]
        assert len(tree) == 2
        stopped = procs.stop_tree(proc, signal.SIGTERM, 0.5)
        assert proc in stopped.forced and stopped.stuck == []
        assert not any(procs.is_alive(p) for p in tree)
    finally:
        child.kill()
        child.wait()
