"""`GET /metrics`: the daemon's state in the Prometheus text format, scraped through the
status app with the fake speaker and the in-memory kernel (no root)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bgpd.api.metrics import add_collector, registry_for
from bgpd.api.status import build_app
from bgpd.cluster.state import ClusterState
from bgpd.daemon import Daemon
from ipam.allocator import IpamState
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import (
    CIDR_A,
    CIDR_B,
    NODE_B,
    NODE_C,
    FakeSpeaker,
    StartDaemon,
    cluster_data,
    settle,
)
from tests.unit.daemon_steps import (
    EXTRA_B,
    LB_IP,
    OWN,
    UPSTREAM,
    announce,
    down,
    session_up,
    until,
    via,
)

POOL = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/29"}]}
SERVICE = {"namespace": "web", "name": "www", "nodes": ["node-a"]}

MakeDaemon = Callable[..., Awaitable[Daemon]]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def make_daemon(tmp_path: Path, start_daemon: StartDaemon) -> MakeDaemon:
    async def make(kernel: FakeKernelRoutes | None = None, lb: bool = False) -> Daemon:
        data = cluster_data(tmp_path)
        data["bgp"]["peers"] = [{"address": str(UPSTREAM), "asn": 65000}]
        if lb:
            data["loadBalancer"] = {"pools": [POOL], "services": [SERVICE]}
        return await start_daemon(data, kernel)

    return make


async def scrape(daemon: Daemon, *, control: bool = False) -> str:
    async with TestClient(TestServer(build_app(daemon, control=control))) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Family name -> type, and (sample name, sorted labels) -> value."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            assert isinstance(sample, Sample)
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample, labels in samples if sample == name]


def promtool_check(text: str) -> None:
    """`promtool check metrics` (Debian's prometheus, installed by scripts/setup) must
    report nothing: no lint finding, no parse error."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: scripts/setup installs prometheus"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr


async def test_metrics_follow_sessions_routes_and_drain(make_daemon: MakeDaemon) -> None:
    kernel = FakeKernelRoutes(fail={EXTRA_B: "Network is unreachable"})
    daemon = await make_daemon(kernel=kernel)
    session_up(daemon, NODE_B)
    announce(daemon, NODE_B, CIDR_A, LB_IP, CIDR_B, EXTRA_B)  # two refused by import policy
    announce(daemon, NODE_B, CIDR_B)
    await until(daemon, {**OWN, CIDR_B: via(CIDR_B, NODE_B)})
    assert await settle(lambda: EXTRA_B in daemon.kernel_failures)
    session_up(daemon, NODE_C)
    down(daemon, NODE_C, "peer reset")
    daemon.drain(wait=60)

    text = await scrape(daemon)
    assert "kroute_bgp_session_up" in await scrape(daemon, control=True)  # the unix socket's app
    types, samples = parse(text)

    assert all(name.startswith("kroute_") for name in types), sorted(types)
    assert all(name.startswith("kroute_") for name, _ in samples)
    assert "_created" not in text  # no creation-time series, in any family
    assert {name for name, kind in types.items() if kind == "counter"} == {
        "kroute_bgp_updates_received",
        "kroute_bgp_routes_rejected",
        "kroute_kernel_route_operation_failures",
        "kroute_kernel_reconcile_runs",
        "kroute_reconcile_errors",
        "kroute_exabgp_restarts",
        "kroute_exabgp_malformed_lines",
        "kroute_exabgp_command_errors",
    }
    for name, _ in samples:  # counter samples end in _total (none emit _created)
        if types.get(name.removesuffix("_total")) == "counter":
            assert name.endswith("_total"), name

    assert value(samples, "kroute_build_info", version="0.1.0") == 1

    up = {labels["peer"]: labels for labels in names(samples, "kroute_bgp_session_up")}
    assert len(up) == 3 and {"node-b", "node-c"} <= set(up)
    b = up["node-b"]
    assert b == {"peer": "node-b", "peer_asn": "64512", "type": "node-to-node mesh"}
    assert value(samples, "kroute_bgp_session_up", **b) == 1
    assert value(samples, "kroute_bgp_session_up", **up["node-c"]) == 0
    upstream = next(labels for labels in up.values() if labels["type"] == "external")
    assert upstream["peer_asn"] == "65000"
    assert value(samples, "kroute_bgp_session_up", **upstream) == 0
    assert value(samples, "kroute_bgp_session_established_seconds", peer="node-b") >= 0
    assert value(samples, "kroute_bgp_session_established_seconds", peer="node-c") == 0
    assert value(samples, "kroute_bgp_prefixes_received", peer="node-b") == 4  # 2 refused
    assert value(samples, "kroute_bgp_prefixes_accepted", peer="node-b") == 2
    assert value(samples, "kroute_bgp_prefixes_stale", peer="node-b") == 0
    assert value(samples, "kroute_bgp_prefixes_advertised", peer="node-b") >= 1
    assert value(samples, "kroute_bgp_prefixes_advertised", peer="node-c") == 0
    assert value(samples, "kroute_bgp_updates_received_total", peer="node-b") == 2
    assert value(samples, "kroute_bgp_updates_received_total", peer="node-c") == 0
    rejected = {
        labels["reason"]: value(samples, "kroute_bgp_routes_rejected_total", **labels)
        for labels in names(samples, "kroute_bgp_routes_rejected_total")
        if labels["peer"] == "node-b"
    }
    assert rejected == {"not in import allow list": 1, "own pod CIDR": 1}

    assert value(samples, "kroute_kernel_routes", type="unicast") == 1
    assert value(samples, "kroute_kernel_routes", type="blackhole") == 1
    assert value(samples, "kroute_kernel_route_failures") == 1
    assert value(samples, "kroute_kernel_route_operation_failures_total") >= 1
    assert value(samples, "kroute_kernel_reconcile_runs_total") >= 1
    assert types["kroute_reconcile_duration_seconds"] == "histogram"
    for reconciler in ("kernel-routes", "advertisements", "lb"):
        assert value(samples, "kroute_reconcile_errors_total", reconciler=reconciler) == 0
        assert value(samples, "kroute_reconciler_healthy", reconciler=reconciler) == 1
        assert value(samples, "kroute_reconciler_heartbeat_age_seconds", reconciler=reconciler) >= 0
        runs = value(samples, "kroute_reconcile_duration_seconds_count", reconciler=reconciler)
        assert runs >= 1
        buckets = {"reconciler": reconciler, "le": "+Inf"}
        assert value(samples, "kroute_reconcile_duration_seconds_bucket", **buckets) == runs
        assert value(samples, "kroute_reconcile_duration_seconds_sum", reconciler=reconciler) >= 0

    assert value(samples, "kroute_exabgp_up") == 1
    assert value(samples, "kroute_exabgp_restarts_total") == 0
    assert value(samples, "kroute_exabgp_malformed_lines_total") == 0
    assert {
        labels["state"]: value(samples, "kroute_drain_state", **labels)
        for labels in names(samples, "kroute_drain_state")
    } == {"none": 0, "draining": 1, "drained": 0}

    # no IPAM usage read, no LB pools configured: those families are absent (not zero)
    assert not any(name.startswith(("kroute_ipam_", "kroute_lb_")) for name in types)
    promtool_check(text)


async def test_ipam_and_lb_pool_usage(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon(lb=True)
    assert await settle(lambda: daemon.lb.view is not None and daemon.lb.view.served != ())
    block = ipaddress.ip_network("10.240.0.0/24")
    cluster = ClusterState(daemon.config)  # no pool configured: no store, no I/O
    cluster.snapshot = IpamState(
        node_blocks={"node-a": (block,), "node-b": (ipaddress.ip_network("10.240.1.0/24"),)},
        pod_ips={
            "node-a": {
                "c1/eth0/v4": ipaddress.ip_address("10.240.0.2"),
                "c2/eth0/v4": ipaddress.ip_address("10.240.0.3"),
            }
        },
    )
    daemon.cluster = cluster

    text = await scrape(daemon)
    types, samples = parse(text)
    assert all(name.startswith("kroute_") for name in types)
    labels: dict[str, Any] = {"family": "ipv4", "block": str(block)}
    assert names(samples, "kroute_ipam_addresses_used") == [labels]
    assert value(samples, "kroute_ipam_addresses_used", **labels) == 2
    assert value(samples, "kroute_ipam_addresses_capacity", **labels) == 254
    assert value(samples, "kroute_lb_pool_addresses_used", pool="blue") == 1
    # 198.51.100.0/29 without its first and last address: 6, one of them taken
    assert value(samples, "kroute_lb_pool_addresses_available", pool="blue") == 5
    promtool_check(text)


def test_one_registry_per_daemon_and_not_the_global_one(
    cluster_config: Any, fake_speaker_class: type[FakeSpeaker]
) -> None:
    from prometheus_client import REGISTRY

    daemon = Daemon(
        cluster_config,
        FakeKernelRoutes(),
        speaker_factory=fake_speaker_class,
        loopback=FakeLoopback(),
        lb_store=MemoryLbStore(),
    )
    other = Daemon(
        cluster_config,
        FakeKernelRoutes(),
        speaker_factory=fake_speaker_class,
        loopback=FakeLoopback(),
        lb_store=MemoryLbStore(),
    )
    assert registry_for(daemon) is registry_for(daemon)
    assert registry_for(daemon) is not registry_for(other)
    assert REGISTRY.get_sample_value("kroute_build_info", {"version": "0.1.0"}) is None
    assert registry_for(daemon).get_sample_value("kroute_exabgp_up") == 0


async def test_other_modules_add_their_own_families(make_daemon: MakeDaemon) -> None:
    """The hook the datapath uses for its counters: scraped with everything else."""
    from prometheus_client.core import CounterMetricFamily

    class Datapath:
        def collect(self) -> Any:
            yield CounterMetricFamily(
                "kroute_datapath_packets_forwarded", "Packets the programs forwarded.", value=7
            )

    daemon = await make_daemon()
    add_collector(daemon, Datapath())
    text = await scrape(daemon)
    _, samples = parse(text)
    assert value(samples, "kroute_datapath_packets_forwarded_total") == 7
    assert value(samples, "kroute_exabgp_up") == 1
    promtool_check(text)
