"""Reload: re-read the config file and apply it to the running daemon, or refuse it.

Two phases. Everything that can fail happens first and changes nothing: the file is
read and validated (password files included), compared with the running config for
restart-only changes, the new peers and facts are computed (`plan`) and exabgp.conf
is rendered. Only then is it applied, in memory and by one atomic file replace. A
refusal at any step leaves the running state exactly as it was, with the same
messages as `kroute check-config`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bgpd.bgp.exabgp_conf import SpeakerSpec
from bgpd.bgp.node_facts import local_facts, speaker_spec
from bgpd.bgp.peers import Peer, own_cluster_id, resolve_peers
from bgpd.bgp.policy import LocalFacts
from bgpd.config.model import Config, load_config
from bgpd.config.peers import PrefixKind
from bgpd.config.stores import parse_lb_pools, parse_lb_services
from bgpd.config.types import Network
from common.errors import ConfigError, KrouteError
from lbipam import Pool
from lbipam.pools import Service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a config means for the running daemon, computed before anything changes."""

    config: Config
    own_cidrs: tuple[Network, ...]
    config_prefixes: dict[Network, PrefixKind]
    lb_pools: tuple[Pool, ...]
    lb_services: tuple[Service, ...]
    node_names: tuple[str, ...]
    cluster_id: str | None
    local: LocalFacts
    peers: tuple[Peer, ...]
    speaker: SpeakerSpec


def plan(config: Config, lb_pools: tuple[Pool, ...] | None) -> Plan:
    """`lb_pools`: the pools in effect (store-applied ones too), None before a round."""
    me = config.self_node()
    own = me.pod_cidrs if me else ()
    prefixes: dict[Network, PrefixKind] = dict.fromkeys(own, "podCIDR")
    if config.bgp.advertise_cluster_ips:  # kube-router's --advertise-cluster-ip
        prefixes.update(dict.fromkeys(config.cluster.service_cidrs, "serviceClusterIP"))
    cluster_id = own_cluster_id(config)
    return Plan(
        config=config,
        own_cidrs=own,
        config_prefixes=prefixes,
        lb_pools=parse_lb_pools(list(config.load_balancer.pools)),
        lb_services=parse_lb_services(list(config.load_balancer.services)),
        node_names=tuple(n.name for n in config.cluster.nodes),
        cluster_id=str(cluster_id) if cluster_id is not None else None,
        local=local_facts(config),
        peers=resolve_peers(config, lb_pools),
        speaker=speaker_spec(config),
    )


class FileConfigHolder(Protocol):
    base: Config
    """The file's config as last applied (before the cluster source filled it in)."""

    def preview(self, base: Config) -> Config:
        """The effective config `base` would give (members, blocks); changes nothing."""
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

    def prepare(self, config: Config) -> Callable[[], None]:
        """Everything that can fail, nothing changed; the callable applies it (and
        raises KrouteError, with nothing changed, if writing exabgp.conf fails)."""
        ...


FIXED: dict[str, Callable[[Config], object]] = {
    "node.name": lambda c: c.node.name,
    "node.ip": lambda c: c.node.ip,
    "node.routerId": lambda c: c.node.router_id,
    "bgp.asn": lambda c: c.bgp.asn,
    "bgp.listenPort": lambda c: c.bgp.listen_port,
    "bgp.mesh": lambda c: c.bgp.mesh,
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


WHY_RESTART = {
    "bgp.mesh": (
        "applied at reload it would close every node-to-node session (or open them all) "
        "at once, and every mesh route would go with them"
    ),
}


def restart_required(old: Config, new: Config) -> list[str]:
    """Changes only a restart applies, one line each naming the field."""
    return [
        f"{field}: changed from {get(old)} to {get(new)}; "
        + (f"{WHY_RESTART[field]}; " if field in WHY_RESTART else "")
        + "restart kroute to apply it"
        for field, get in FIXED.items()
        if get(old) != get(new)
    ]


def prepare(daemon: Reloadable, config: Config) -> Callable[[], None]:
    """Check `config` against the running one and prepare it; raises ConfigError."""
    # the file's config as last applied: the effective one also holds what the
    # cluster source set (Kubernetes: the Node's InternalIP and ASN annotation)
    old = daemon.cluster.base if daemon.cluster is not None else daemon.config
    errors = restart_required(old, config)
    if errors:
        raise ConfigError(errors)
    cluster = daemon.cluster
    try:  # allocations and members stay, the rest follows the file
        apply = daemon.prepare(cluster.preview(config) if cluster is not None else config)
    except (KrouteError, ValueError, OSError) as exc:
        raise ConfigError(str(exc).splitlines()) from None

    def commit() -> None:
        apply()
        if cluster is not None:
            cluster.base = config

    return commit


async def reload(daemon: Reloadable, path: str | Path) -> list[str]:
    """Apply `path` to `daemon`; returns the errors that refused it (empty: applied).
    The file is read in a thread; preparing and applying run on the loop, with no
    await between them, so nothing else changes the daemon in between."""
    loop = asyncio.get_running_loop()
    try:
        config = await loop.run_in_executor(None, load_config, path)
        apply = prepare(daemon, config)
        apply()  # its one side effect that can fail (writing exabgp.conf) comes first
    except ConfigError as exc:
        errors = exc.errors
    except KrouteError as exc:
        errors = [str(exc)]
    else:
        log.info("event=config-reloaded path=%s peers=%d", path, len(daemon.peers))
        return []
    for line in errors:
        log.error("event=config-refused path=%s error=%r", path, line)
    return errors
