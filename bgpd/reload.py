"""Reload: re-read the config file and apply it to the running daemon, or refuse it.

An invalid file is refused with the same messages as `kroute check-config`, and so is
a change a running daemon cannot take (who this node is, where it listens); in both
cases the running state stays as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Protocol

from bgpd.config.model import Config, load_config
from common.errors import ConfigError

log = logging.getLogger(__name__)


class FileConfigHolder(Protocol):
    @property
    def base(self) -> Config:
        """The file's config as last applied (before the cluster source filled it in)."""
        ...


class Reloadable(Protocol):
    """What reload needs of the daemon: handed in by the daemon, which imports this
    module, never imported back."""

    @property
    def config(self) -> Config: ...

    @property
    def cluster(self) -> FileConfigHolder | None: ...

    @property
    def peers(self) -> Sized: ...

    def apply_file_config(self, config: Config) -> None: ...


FIXED: dict[str, Callable[[Config], object]] = {
    "node.name": lambda c: c.node.name,
    "node.ip": lambda c: c.node.ip,
    "node.routerId": lambda c: c.node.router_id,
    "bgp.asn": lambda c: c.bgp.asn,
    "bgp.listenPort": lambda c: c.bgp.listen_port,
    "status": lambda c: c.status,
    "runDir": lambda c: c.run_dir,
    "ipam": lambda c: c.ipam,
    "cluster.source": lambda c: c.cluster.source,
    "etcd": lambda c: c.etcd,
    "routing": lambda c: c.routing,
    "datapath": lambda c: c.datapath,
    "kubernetes": lambda c: c.kubernetes,
    "log.format": lambda c: c.log.format,
}


def restart_required(old: Config, new: Config) -> list[str]:
    """Changes only a restart applies, one line each naming the field."""
    return [
        f"{field}: changed from {get(old)} to {get(new)}; restart kroute to apply it"
        for field, get in FIXED.items()
        if get(old) != get(new)
    ]


def reload(daemon: Reloadable, path: str | Path) -> list[str]:
    """Apply `path` to `daemon`; returns the errors that refused it (empty: applied)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        errors = exc.errors
    else:
        # the file's config as last applied: the effective one also holds what the
        # cluster source set (Kubernetes: the Node's InternalIP and ASN annotation)
        old = daemon.cluster.base if daemon.cluster is not None else daemon.config
        errors = restart_required(old, config)
        if not errors:
            daemon.apply_file_config(config)
            log.info("event=config-reloaded path=%s peers=%d", path, len(daemon.peers))
            return []
    for line in errors:
        log.error("event=config-refused path=%s error=%r", path, line)
    return errors
