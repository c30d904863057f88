"""The LB store a config names: etcd when the config has an `etcd` section (shared by
every node), else the file `lbipam.json` beside the IPAM file (`ipam.file`'s directory),
the cluster's store dir."""

from __future__ import annotations

from pathlib import Path

from bgpd.cluster.state import etcd_credentials
from bgpd.config.model import Config
from bgpd.lb.store import FileLbStore, LbStore


def lb_store_path(config: Config) -> Path:
    return Path(config.ipam.file).parent / "lbipam.json"


def make_lb_store(config: Config) -> LbStore:
    """etcd when configured (shared by every node), else the file beside `ipam.file`."""
    if config.etcd is not None:
        from bgpd.lb.etcd_store import EtcdLbStore
        from ipam.etcd_store import EtcdAccess

        return EtcdLbStore(EtcdAccess(config.etcd.endpoints, **etcd_credentials(config)))
    return FileLbStore(lb_store_path(config))
