"""`kroute run`: the real daemon with its real side effects (netlink, exabgp, HTTP)."""

from __future__ import annotations

import logging
from pathlib import Path

from bgpd.cluster import ClusterState
from bgpd.config import Config
from bgpd.daemon import Daemon
from bgpd.lb_store import make_lb_store
from bgpd.status import StatusServer
from datapath.loopback import KernelLoopback
from datapath.netlink import NetlinkKernelRoutes

log = logging.getLogger(__name__)


async def run_daemon(config: Config, config_path: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT; kernel routes stay for the next start to adopt."""
    Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    cluster = ClusterState(config)
    effective = await cluster.start()
    daemon = Daemon(
        effective,
        NetlinkKernelRoutes(),
        config_path=config_path,
        cluster=cluster,
        loopback=KernelLoopback(),
        lb_store=make_lb_store(config),
    )
    cluster.follow(daemon)
    server = StatusServer(daemon)
    log.info(
        "event=starting node=%s router_id=%s asn=%d peers=%d",
        config.node.name,
        config.node.router_id,
        config.bgp.asn,
        len(daemon.peers),
    )
    await server.start()
    try:
        await daemon.run()
    finally:
        await server.stop()
        await cluster.close()
    log.info("event=stopped node=%s kernel_routes=left-in-place", config.node.name)
