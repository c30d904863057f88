"""Reload with `cluster.source: kubernetes`: the file is compared with the file last
applied, not with the effective config (whose node IP and ASN come from the Node), and
the `kubernetes` section is restart-only."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import yaml

from bgpd.config.model import Config, load_config
from bgpd.daemon import Daemon
from bgpd.reload import reload

FILE: dict[str, Any] = {
    "node": {"name": "n1", "ip": "10.0.0.1"},
    "bgp": {"asn": 64512},
    "cluster": {"source": "kubernetes"},
    "ipam": {"mode": "kubernetes"},
}


class DaemonDouble:
    """What `reload` uses of a daemon: its effective config, the cluster's file config."""

    def __init__(self, base: Config, effective: Config) -> None:
        self.config = effective
        self.cluster = SimpleNamespace(base=base, preview=lambda config: config)
        self.peers: dict[str, Any] = {}
        self.applied: Config | None = None

    def prepare(self, config: Config) -> Callable[[], None]:
        return lambda: setattr(self, "applied", config)


async def test_reload_compares_with_the_file_not_the_node_object(tmp_path: Path) -> None:
    path = tmp_path / "kroute.yaml"
    path.write_text(yaml.safe_dump(FILE))
    base = load_config(path)
    node = base.node.model_copy(update={"ip": ipaddress.IPv4Address("10.0.0.9")})
    effective = base.model_copy(
        update={"node": node, "bgp": base.bgp.model_copy(update={"asn": 64999})}
    )
    daemon = DaemonDouble(base, effective)
    path.write_text(yaml.safe_dump({**FILE, "bgp": {"asn": 64512, "holdTime": 30}}))
    assert await reload(cast(Daemon, daemon), path) == []
    assert daemon.applied is not None and daemon.applied.bgp.hold_time == 30
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    path.write_text(yaml.safe_dump({**FILE, "kubernetes": {"kubeconfig": str(kubeconfig)}}))
    errors = await reload(cast(Daemon, daemon), path)
    assert len(errors) == 1 and errors[0].startswith("kubernetes: changed")
