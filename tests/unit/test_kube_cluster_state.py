"""KubeClusterState against the fake API server, without root: the first effective
config from the Node objects (own ASN from the annotation, read once at start), and a
daemon reconfigured when a Node is added."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from bgpd.cluster.kube_source import KubeClusterState
from bgpd.config.model import Config, parse_config
from bgpd.daemon import Daemon
from bgpd.health import Health
from bgpd.kube.api import MERGE_PATCH, api_client
from tests.k8s import apis
from tests.k8s.fake_apiserver import fake_apiserver
from tests.k8s.objects import node


class DaemonDouble:
    """What `follow` uses of a daemon: its config, `reconfigure` and `health`."""

    def __init__(self, config: Config, failures: int = 0) -> None:
        self.config = config
        self.health = Health()
        self.reconfigured = asyncio.Event()
        self.failures = failures

    def reconfigure(self, config: Config) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("refused once")
        self.config = config
        self.reconfigured.set()


def add_node(core: Any, obj: dict[str, Any]) -> None:
    core.create_node(obj)
    core.patch_node_status(obj["metadata"]["name"], {"status": obj["status"]},
                           _content_type=MERGE_PATCH)  # fmt: skip


async def test_start_and_follow(tmp_path: Path) -> None:
    with fake_apiserver(bookmark_interval=0.2) as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig")
        core = apis.core(api_client(str(kubeconfig)))
        add_node(core, node("n1", "10.0.0.1", ["10.244.1.0/24"], {"kroute.io/asn": "64600"}))
        config = parse_config({
            "node": {"name": "n1", "ip": "10.0.0.1"}, "bgp": {"asn": 64512},
            "cluster": {"source": "kubernetes"}, "ipam": {"mode": "kubernetes"},
            "kubernetes": {"kubeconfig": str(kubeconfig)}, "runDir": str(tmp_path),
        }, host_defaults=False)  # fmt: skip
        state = KubeClusterState(config)
        effective = await state.start()
        try:
            assert effective.bgp.asn == 64600
            me = effective.self_node()
            assert me is not None and [str(c) for c in me.pod_cidrs] == ["10.244.1.0/24"]
            daemon = DaemonDouble(effective, failures=1)  # a failed change is not the end
            state.follow(cast(Daemon, daemon))  # the part of a Daemon it uses
            await asyncio.to_thread(add_node, core, node("n3", "10.0.0.3", ["10.244.3.0/24"]))
            async with asyncio.timeout(20):
                while daemon.failures:
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(add_node, core, node("n2", "10.0.0.2", ["10.244.2.0/24"]))
            async with asyncio.timeout(20):
                await daemon.reconfigured.wait()
            assert [n.name for n in daemon.config.cluster.nodes] == ["n1", "n2", "n3"]
            assert sorted(state.members) == ["n1", "n2", "n3"]
            report = await state.report()
            assert report["mode"] == "kubernetes" and set(report["apiServer"]) >= {"nodes"}
        finally:
            await state.close()
