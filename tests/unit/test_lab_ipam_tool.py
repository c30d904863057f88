"""`python -m lab.ipam_tool` against a lab node's config with the file store (no root):
nodes get blocks in the order given, pods the lowest IP of their block, and asking again
(as the daemon does at start) changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipam.allocator import IpamState
from lab import ipam_tool
from lab.build import write_config
from lab.plan import plan_lab


def test_allocates_in_order_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_lab("kr", 3, 3, root=tmp_path)
    n1 = plan.nodes[0]
    write_config(plan, n1)
    pairs = [f"{n.name}={n.container_id}" for n in plan.nodes]
    assert ipam_tool.main([n1.config_path, *pairs]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [(first[n.name]["podCIDR"], first[n.name]["podIP"]) for n in plan.nodes] == [
        ("10.203.0.0/24", "10.203.0.1"),
        ("10.203.1.0/24", "10.203.1.1"),
        ("10.203.2.0/24", "10.203.2.1"),
    ]
    assert ipam_tool.main([n1.config_path, *reversed(pairs)]) == 0
    assert json.loads(capsys.readouterr().out) == first
    state = IpamState.from_json(Path(plan.ipam_file).read_text())
    assert sorted(state.pod_ips["kr-n2"]) == ["lab-kr-n2-p1/eth0/v4"]


def test_errors_name_the_file_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ipam_tool.main([str(tmp_path / "missing.yaml"), "kr-n1=c1"]) == 1
    assert "missing.yaml: cannot read" in capsys.readouterr().err
    static = tmp_path / "static.yaml"
    static.write_text("node: {name: a, ip: 10.0.0.1}\nbgp: {asn: 64512}\n")
    assert ipam_tool.main([str(static), "a=c1"]) == 1
    assert "not cluster-pool" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        ipam_tool.main([str(static), "no-equals-sign"])
    assert exc.value.code == 2
