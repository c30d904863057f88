"""`kroute run`: the real daemon with its real side effects (netlink, exabgp, HTTP)."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from bgpd.api.datapath_metrics import DatapathCollector
from bgpd.api.metrics import add_collector
from bgpd.api.sdnotify import notifier_for
from bgpd.api.status import StatusServer
from bgpd.cluster.state import ClusterState
from bgpd.config.model import Config
from bgpd.daemon import Daemon
from bgpd.lb.configured_store import make_lb_store
from bgpd.reconcile.datapath import DatapathSync
from bgpd.reconcile.host import NetlinkHost
from bgpd.reconcile.overlay import OverlayRouting
from datapath.loader import BpfDatapath
from datapath.loopback import KernelLoopback
from datapath.netlink import NetlinkKernelRoutes
from datapath.overlay import VxlanOverlay

log = logging.getLogger(__name__)


async def run_daemon(config: Config, config_path: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT; kernel routes stay for the next start to adopt."""
    Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    cluster = ClusterState(config)
    if config.cluster.source == "kubernetes":
        from bgpd.cluster.kube_source import KubeClusterState

        cluster = KubeClusterState(config)
    effective = await cluster.start()
    daemon = Daemon(
        effective,
        NetlinkKernelRoutes(),
        config_path=config_path,
        cluster=cluster,
        loopback=KernelLoopback(),
        datapath=DatapathSync(
            effective, NetlinkHost(), functools.partial(BpfDatapath, node_ip=effective.node.ip)
        ),
        routing=OverlayRouting(VxlanOverlay),
        lb_store=make_lb_store(config),
    )
    cluster.follow(daemon)
    if daemon.datapath is not None:
        add_collector(daemon, DatapathCollector(daemon.datapath))
    server = StatusServer(daemon)
    log.info(
        "event=starting node=%s router_id=%s asn=%d peers=%d",
        config.node.name,
        config.node.router_id,
        config.bgp.asn,
        len(daemon.peers),
    )
    await server.start()
    notifier = notifier_for(daemon)
    notifying = asyncio.create_task(notifier.run()) if notifier is not None else None
    try:
        await daemon.run()
    finally:
        if notifier is not None and notifying is not None:
            notifying.cancel()
            notifier.stopping()
        await server.stop()
        await cluster.close()
    log.info("event=stopped node=%s kernel_routes=left-in-place", config.node.name)
