"""bgpd.config.model: good files load with derived defaults; bad files give one ConfigError with
one line per problem, each naming the field."""

from __future__ import annotations

import copy
import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.config.model import (
    DEFAULT_RUN_DIR,
    DEFAULT_SOCKET,
    load_config,
    parse_config,
    parse_listen,
)
from common.errors import ConfigError, KrouteError
from tests.unit.conftest import CIDR_A, NODE_A, NODE_B, NODE_C, cluster_data

REPO = Path(__file__).resolve().parents[2]


def errors_of(data: object, *, host_defaults: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, host_defaults=host_defaults)
    assert info.value.errors, "a ConfigError must carry at least one line"
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kroute.yaml"
    path.write_text(text)
    return path


def data_with(**changes: Any) -> dict[str, Any]:
    """cluster_data() with dotted-path overrides, e.g. data_with(**{"bgp.asn": 0})."""
    data = copy.deepcopy(cluster_data())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return data


# -- good configs ------------------------------------------------------------------


def test_good_file_loads_with_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(cluster_data(tmp_path)))
    config = load_config(path)
    assert config.node.name == "node-a"
    assert config.node.ip == NODE_A
    assert config.node.router_id == NODE_A
    assert config.bgp.asn == 64512
    assert config.bgp.hold_time == 9
    assert config.bgp.graceful_restart.enabled is True
    assert config.bgp.graceful_restart.restart_time == 1
    assert [n.name for n in config.cluster.nodes] == ["node-a", "node-b", "node-c"]
    assert config.self_node() is not None
    assert config.self_node().pod_cidrs == (CIDR_A,)  # type: ignore[union-attr]
    assert [n.ip for n in config.peers()] == [NODE_B, NODE_C]
    assert config.run_dir == str(tmp_path)


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(
        {"node": {"name": "solo", "ip": "192.0.2.10"}, "bgp": {"asn": 65001}},
        host_defaults=True,
    )
    assert config.bgp.hold_time == 90
    assert config.bgp.listen_port == 179
    assert config.bgp.graceful_restart.enabled is True
    assert config.bgp.graceful_restart.restart_time == 120
    assert config.cluster.source == "static"
    assert config.cluster.nodes == ()
    assert config.status.listen == "127.0.0.1:9479"
    assert config.status.socket == DEFAULT_SOCKET
    assert config.run_dir == DEFAULT_RUN_DIR
    assert config.node.router_id == ipaddress.IPv4Address("192.0.2.10")
    assert config.peers() == ()


def test_router_id_defaults_to_node_ip_taken_from_cluster_entry() -> None:
    config = parse_config(cluster_data(), host_defaults=True)
    assert config.node.ip == NODE_A
    assert config.node.router_id == NODE_A


def test_explicit_router_id_is_kept() -> None:
    config = parse_config(data_with(**{"node.routerId": "1.2.3.4"}), host_defaults=True)
    assert config.node.router_id == ipaddress.IPv4Address("1.2.3.4")
    assert config.node.ip == NODE_A


def test_explicit_node_ip_matching_cluster_entry_is_fine() -> None:
    config = parse_config(data_with(**{"node.ip": str(NODE_A)}), host_defaults=True)
    assert config.node.ip == NODE_A


def test_node_name_defaults_to_short_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b.example.org")
    data = cluster_data()
    del data["node"]
    config = parse_config(data, host_defaults=True)
    assert config.node.name == "node-b"
    assert config.node.ip == NODE_B
    assert [n.name for n in config.peers()] == ["node-a", "node-c"]


def test_without_host_defaults_node_stays_empty() -> None:
    data = cluster_data()
    del data["node"]
    config = parse_config(data, host_defaults=False)
    assert config.node.name == ""
    assert config.node.ip is None
    assert config.node.router_id is None


@pytest.mark.parametrize("hold_time", [0, 3, 65535])
def test_hold_time_limits_accepted(hold_time: int) -> None:
    assert parse_config(data_with(**{"bgp.holdTime": hold_time})).bgp.hold_time == hold_time


@pytest.mark.parametrize("listen", ["", "0.0.0.0:9479", "[::1]:80", "127.0.0.1:65535"])
def test_status_listen_accepted(listen: str) -> None:
    assert parse_config(data_with(**{"status.listen": listen})).status.listen == listen


def test_parse_listen_splits_host_and_port() -> None:
    assert parse_listen("127.0.0.1:9479") == ("127.0.0.1", 9479)
    assert parse_listen("[::1]:80") == ("::1", 80)


def test_ipv6_pod_cidrs_do_not_clash_with_ipv4() -> None:
    data = cluster_data()
    data["cluster"]["nodes"][1]["podCIDRs"].append("fd00:10:244:2::/64")
    data["cluster"]["nodes"][2]["podCIDRs"].append("fd00:10:244:3::/64")
    config = parse_config(data)
    assert len(config.cluster.nodes[1].pod_cidrs) == 2


def test_config_is_frozen() -> None:
    config = parse_config(cluster_data())
    with pytest.raises(ValueError):
        config.bgp.asn = 1


def test_example_config_in_repo_loads() -> None:
    config = load_config(REPO / "config" / "kroute.yaml")
    assert config.node.name in {n.name for n in config.cluster.nodes}
    assert len(config.cluster.nodes) == 3
    assert config.self_node() is not None
    assert config.self_node().pod_cidrs  # type: ignore[union-attr]
    assert config.bgp.graceful_restart.enabled


# -- bad configs: one line per problem, naming the field ------------------------------


@pytest.mark.parametrize("asn", [0, -5])
def test_asn_below_range(asn: int) -> None:
    assert errors_of(data_with(**{"bgp.asn": asn})) == [f"bgp.asn: must be 1-4294967295, got {asn}"]


def test_asn_above_range() -> None:
    assert errors_of(data_with(**{"bgp.asn": 4294967296})) == [
        "bgp.asn: must be 1-4294967295, got 4294967296"
    ]


def test_asn_missing() -> None:
    data = cluster_data()
    del data["bgp"]["asn"]
    assert errors_of(data) == ["bgp.asn: required; set it"]


@pytest.mark.parametrize("value", [None, [64512], {"a": 1}, "many"])
def test_asn_wrong_type_is_a_config_error(value: object) -> None:
    """`asn:` left empty in YAML is None; it must be reported, not crash the loader."""
    errors = errors_of(data_with(**{"bgp.asn": value}))
    assert len(errors) == 1
    assert errors[0].startswith("bgp.asn: ")


def test_unknown_keys_everywhere() -> None:
    data = cluster_data()
    data["bgp"]["bogus"] = 1
    data["bogus"] = 2
    data["cluster"]["nodes"][1]["podCidrs"] = []
    errors = errors_of(data)
    assert "bgp.bogus: unknown key; remove it or check its spelling" in errors
    assert "bogus: unknown key; remove it or check its spelling" in errors
    assert "cluster.nodes[1].podCidrs: unknown key; remove it or check its spelling" in errors
    assert len(errors) == 3


@pytest.mark.parametrize("hold_time", [1, 2])
def test_hold_time_one_or_two_refused(hold_time: int) -> None:
    (line,) = errors_of(data_with(**{"bgp.holdTime": hold_time}))
    assert line.startswith("bgp.holdTime: ")
    assert "3-65535" in line


@pytest.mark.parametrize("hold_time", [-1, 65536])
def test_hold_time_out_of_range(hold_time: int) -> None:
    (line,) = errors_of(data_with(**{"bgp.holdTime": hold_time}))
    assert line.startswith("bgp.holdTime: ")
    assert line.endswith(f"got {hold_time}")


@pytest.mark.parametrize("restart_time", [0, 4096])
def test_restart_time_out_of_range(restart_time: int) -> None:
    (line,) = errors_of(data_with(**{"bgp.gracefulRestart": {"restartTime": restart_time}}))
    assert line.startswith("bgp.gracefulRestart.restartTime: ")


@pytest.mark.parametrize("port", [0, 65536])
def test_listen_port_out_of_range(port: int) -> None:
    (line,) = errors_of(data_with(**{"bgp.listenPort": port}))
    assert line.startswith("bgp.listenPort: ")


def test_pod_cidr_with_host_bits() -> None:
    data = cluster_data()
    data["cluster"]["nodes"][1]["podCIDRs"] = ["10.244.2.1/24"]
    (line,) = errors_of(data)
    assert line.startswith("cluster.nodes[1].podCIDRs[0]: ")
    assert "host bits" in line
    assert "10.244.2.0/24" in line


@pytest.mark.parametrize("cidr", ["not-a-cidr", "10.244.2.0/33", 42])
def test_pod_cidr_not_a_cidr(cidr: object) -> None:
    data = cluster_data()
    data["cluster"]["nodes"][2]["podCIDRs"] = ["10.244.3.0/24", cidr]
    (line,) = errors_of(data)
    assert line.startswith("cluster.nodes[2].podCIDRs[1]: ")


def test_overlapping_pod_cidrs() -> None:
    data = cluster_data()
    data["cluster"]["nodes"][1]["podCIDRs"] = ["10.244.0.0/16"]
    errors = errors_of(data)
    assert errors == [
        "cluster.nodes[1].podCIDRs[0]: 10.244.0.0/16 overlaps 10.244.1.0/24 of 'node-a'; "
        "pod CIDRs must not overlap",
        "cluster.nodes[2].podCIDRs[0]: 10.244.3.0/24 overlaps 10.244.0.0/16 of 'node-b'; "
        "pod CIDRs must not overlap",
    ]


def test_duplicate_node_names_and_ips() -> None:
    data = cluster_data()
    data["cluster"]["nodes"][1]["name"] = "node-a"
    data["cluster"]["nodes"][2]["ip"] = str(NODE_A)
    errors = errors_of(data, host_defaults=False)
    assert any(e.startswith("cluster.nodes[1].name: 'node-a' already used") for e in errors)
    assert any(e.startswith("cluster.nodes[2].ip: 10.0.0.1 already used") for e in errors)
    assert len(errors) == 2


def test_empty_node_name_in_cluster() -> None:
    data = cluster_data()
    data["cluster"]["nodes"][2]["name"] = ""
    (line,) = errors_of(data, host_defaults=False)
    assert line.startswith("cluster.nodes[2].name: ")


def test_cluster_node_ip_must_be_ipv4() -> None:
    data = cluster_data()
    data["cluster"]["nodes"][2]["ip"] = "not-an-ip"
    (line,) = errors_of(data, host_defaults=False)
    assert line.startswith("cluster.nodes[2].ip: ")


def test_node_name_not_in_cluster() -> None:
    (line,) = errors_of(data_with(**{"node.name": "node-z"}))
    assert line.startswith("node.name: 'node-z' is not in cluster.nodes")


def test_node_ip_disagreeing_with_cluster_entry() -> None:
    (line,) = errors_of(data_with(**{"node.ip": "10.9.9.9"}))
    assert line.startswith("node.ip: 10.9.9.9 differs from cluster.nodes entry 'node-a'")


def test_unknown_cluster_source() -> None:
    (line,) = errors_of(data_with(**{"cluster.source": "consul"}))
    assert line.startswith("cluster.source: ")


def test_etcd_source_needs_etcd_and_cluster_pool() -> None:
    lines = errors_of(data_with(**{"cluster.source": "etcd"}))
    assert "etcd: required by cluster.source or ipam.store etcd; set etcd.endpoints" in lines
    assert any(
        line.startswith("ipam.mode: cluster.source etcd needs cluster-pool") for line in lines
    )
    assert any(line.startswith("cluster.nodes: with cluster.source etcd") for line in lines)


@pytest.mark.parametrize(
    ("listen", "hint"),
    [
        ("9479", "HOST:PORT"),
        ("127.0.0.1:", "HOST:PORT"),
        ("127.0.0.1:70000", "HOST:PORT"),
        ("127.0.0.1:http", "HOST:PORT"),
        ("localhost:9479", "host must be an IP address"),
    ],
)
def test_status_listen_format(listen: str, hint: str) -> None:
    (line,) = errors_of(data_with(**{"status.listen": listen}))
    assert line.startswith("status.listen: ")
    assert hint in line


@pytest.mark.parametrize("data", [[], "text", 5])
def test_top_level_not_a_mapping(data: object) -> None:
    (line,) = errors_of(data)
    assert line.startswith("(top level): must be a mapping")


def test_empty_document_reports_missing_bgp() -> None:
    assert errors_of(None, host_defaults=False) == ["bgp: required; set it"]


def test_every_field_error_in_one_config_error() -> None:
    data = cluster_data()
    data["bgp"]["asn"] = 0
    data["bgp"]["holdTime"] = 1
    data["bgp"]["bogus"] = True
    data["status"]["listen"] = "nope"
    data["cluster"]["nodes"][1]["podCIDRs"] = ["10.244.2.1/24"]
    errors = errors_of(data)
    assert "bgp.asn: must be 1-4294967295, got 0" in errors
    assert any(e.startswith("bgp.holdTime: ") for e in errors)
    assert "bgp.bogus: unknown key; remove it or check its spelling" in errors
    assert any(e.startswith("status.listen: ") for e in errors)
    assert any(e.startswith("cluster.nodes[1].podCIDRs[0]: ") for e in errors)
    assert len(errors) == 5


def test_cluster_errors_reported_together_with_field_errors() -> None:
    """`load_config` promises every problem in one ConfigError: a duplicate node name must
    not wait until the ASN has been fixed to be reported."""
    data = cluster_data()
    data["bgp"]["asn"] = 0
    data["cluster"]["nodes"][2]["name"] = "node-b"
    errors = errors_of(data)
    assert "bgp.asn: must be 1-4294967295, got 0" in errors
    assert any(e.startswith("cluster.nodes[2].name: 'node-b' already used") for e in errors)


# -- files -------------------------------------------------------------------------


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bgp:\n  asn: 64512\ncluster:\n  nodes: [\n  - oops: {\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.errors
    assert line.startswith(f"{path}: not valid YAML at line ")


def test_invalid_yaml_line_number_is_right(tmp_path: Path) -> None:
    path = write(tmp_path, "bgp:\n  asn: 64512\n  holdTime: 9\n\tbad: tab\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.errors
    assert "at line 4," in line


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.errors
    assert line.startswith(f"{path}: cannot read: ")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert "bgp: required; set it" in info.value.errors


def test_bad_file_errors_all_at_once(tmp_path: Path) -> None:
    text = """
node:
  name: node-a
bgp:
  asn: 0
  holdTime: 2
  gracefulRestart:
    restartTime: 0
cluster:
  nodes:
    - name: node-a
      ip: 10.0.0.1
      podCIDRs: [10.244.1.1/24]
status:
  listen: "bad"
  bogus: 1
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    errors = info.value.errors
    assert len(errors) == 6, errors
    fields = sorted(e.split(":", 1)[0] for e in errors)
    assert fields == [
        "bgp.asn",
        "bgp.gracefulRestart.restartTime",
        "bgp.holdTime",
        "cluster.nodes[0].podCIDRs[0]",
        "status.bogus",
        "status.listen",
    ]


def test_config_error_is_a_kroute_error() -> None:
    assert issubclass(ConfigError, KrouteError)


def test_cluster_with_three_distinct_nodes_has_no_errors() -> None:
    config = parse_config(cluster_data())
    assert {n.ip for n in config.cluster.nodes} == {NODE_A, NODE_B, NODE_C}


@pytest.mark.parametrize(
    ("run_dir", "why"),
    [
        ("run/kroute", "must be an absolute path"),
        ("/run/kroute dir", "must be an absolute path of letters"),
        ('/run/k"; run /bin/sh', "(it goes into exabgp.conf)"),
        ("/run/a,b", "must be an absolute path of letters"),
        ("/" + "r" * 100, "too long for the exabgp socket"),
    ],
)
def test_a_run_dir_exabgp_conf_cannot_hold_is_refused(run_dir: str, why: str) -> None:
    errors = errors_of(data_with(runDir=run_dir))
    assert len(errors) == 1 and errors[0].startswith("runDir: ")
    assert why in errors[0]
