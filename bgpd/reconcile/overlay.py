"""Routing modes in the daemon: which learned routes go natively and which through the
VXLAN overlay, and the VXLAN device that carries them.

With `routing.mode: vxlan` every reconcile reads the underlay (device, MTU, connected
subnets), keeps the device with an FDB and a permanent neighbour entry per cluster node
(`datapath.overlay`), and passes the desired kernel routes through
`datapath.overlay_plan.plan_routes`: a route towards a node the policy sends over the
overlay becomes `via NODE_OVERLAY_IP dev kroute.vxlan onlink`, the others stay native,
and a route nothing can carry is left out and reported as unreachable. Membership changes
reach here as config changes, so routes move between native and overlay on the next
reconcile. In native mode nothing is planned (routes stay as BGP learned them) and a
device a previous vxlan run left is removed once. Blocking: run it in an executor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from bgpd.config.model import Config
from common.errors import KrouteError
from datapath.overlay_plan import (
    LocalNode,
    RemoteNode,
    RoutePlan,
    RoutingSettings,
    overlay_peers,
    plan_routes,
    vxlan_spec,
)
from datapath.overlay_state import Overlay, OverlaySync
from datapath.routes import KernelRoute, Network

log = logging.getLogger(__name__)


def routing_settings(config: Config) -> RoutingSettings:
    routing = config.routing
    vxlan = routing.vxlan
    if vxlan is None:
        return RoutingSettings(routing.mode, routing.effective_overlay)
    return RoutingSettings(routing.mode, routing.effective_overlay, vni=vxlan.vni, port=vxlan.port)


def local_and_remotes(
    config: Config, underlay_subnets: tuple[Network, ...], underlay_mtu: int
) -> tuple[LocalNode, list[RemoteNode]]:
    """This node and the other cluster members as the planner sees them."""
    assert config.node.ip is not None
    me = config.self_node()
    local = LocalNode(
        config.node.name,
        config.node.ip,
        underlay_subnets,
        me.pod_cidrs if me else (),
        underlay_mtu,
    )
    remotes = [RemoteNode(n.name, n.ip, n.pod_cidrs) for n in config.peers()]
    return local, remotes


class OverlayRouting:
    """The daemon's routing-mode step between desired routes and the kernel reconciler."""

    def __init__(self, make_overlay: Callable[[], Overlay]) -> None:
        self._make_overlay = make_overlay
        self._overlay: Overlay | None = None
        self.plan: RoutePlan | None = None
        self.device: OverlaySync | None = None
        self._cleaned = False

    @property
    def overlay(self) -> Overlay:
        """Made on first use, in the executor thread: pyroute2's netlink socket cannot be
        opened inside the daemon's running event loop."""
        if self._overlay is None:
            self._overlay = self._make_overlay()
        return self._overlay

    def apply(
        self, config: Config, desired: Mapping[Network, KernelRoute]
    ) -> dict[Network, KernelRoute]:
        """The kernel routes to program for `desired` under `config.routing`."""
        settings = routing_settings(config)
        if settings.mode == "native":
            if not self._cleaned:
                self._cleaned = True
                try:  # best effort: native routing must not depend on it
                    if self.overlay.remove(settings.device):
                        log.info("event=overlay-device-removed dev=%s", settings.device)
                except (KrouteError, OSError) as exc:
                    log.warning("event=overlay-cleanup-failed error=%r", str(exc))
            self.plan = None
            return dict(desired)
        assert config.node.ip is not None
        underlay = self.overlay.underlay(config.node.ip)
        local, remotes = local_and_remotes(config, underlay.subnets, underlay.mtu)
        spec = vxlan_spec(settings, local, underlay.dev)
        if spec is None:
            self.overlay.remove(settings.device)
            self.device = None
        else:
            self.device = self.overlay.sync(spec, overlay_peers(local, remotes))
        self.plan = plan_routes(settings, local, remotes, desired)
        return self.plan.kernel_routes()

    def status(self, config: Config) -> dict[str, Any]:
        routing = config.routing
        out: dict[str, Any] = {"mode": routing.mode, "overlay": routing.effective_overlay}
        if self.plan is not None:
            out["routes"] = self.plan.counts()
            out["unreachable"] = {str(p): why for p, why in self.plan.unreachable().items()}
        if self.device is not None:
            out["device"] = {"name": self.device.device, "ifindex": self.device.ifindex}
        return out
