"""HTTP endpoints for cluster state: `GET /ipam`, `GET /nodes`, and (unix socket only)
`POST /nodes/remove?name=N`, which releases a removed node's blocks and pod IPs.
The LoadBalancer endpoints are `bgpd.api.lb`'s."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from bgpd.api.lb import add_lb_routes
from common.errors import KrouteError

if TYPE_CHECKING:
    from bgpd.daemon import Daemon


def add_cluster_routes(app: web.Application, daemon: Daemon, *, control: bool) -> None:
    async def ipam(_: web.Request) -> web.Response:
        cluster = daemon.cluster
        if cluster is None or cluster.store is None:
            return web.json_response({"mode": daemon.config.ipam.mode, "state": None})
        try:
            state = await cluster.store.snapshot()
        except KrouteError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(
            {
                "mode": "cluster-pool",
                "store": daemon.config.ipam.store,
                "state": json.loads(state.to_json()),
            }
        )

    async def nodes(_: web.Request) -> web.Response:
        members = daemon.cluster.members if daemon.cluster is not None else {}
        rows = []
        for node in daemon.config.cluster.nodes:
            peer = daemon.peers.get(node.ip)
            rows.append(
                {
                    "name": node.name,
                    "ip": str(node.ip),
                    "podCIDRs": [str(c) for c in node.pod_cidrs],
                    "self": node.name == daemon.config.node.name,
                    "member": node.name in members or daemon.config.cluster.source == "static",
                    "session": peer.state if peer is not None else None,
                }
            )
        return web.json_response({"source": daemon.config.cluster.source, "nodes": rows})

    async def remove(request: web.Request) -> web.Response:
        name = request.query.get("name", "")
        cluster = daemon.cluster
        if cluster is None or cluster.store is None:
            return web.json_response({"error": "ipam.mode is not cluster-pool"}, status=400)
        if name == daemon.config.node.name or name in cluster.members:
            return web.json_response(
                {"error": f"node {name!r} is still a member; stop it (or wait for its lease)"},
                status=409,
            )
        try:
            await cluster.store.release_node(name)
        except (KrouteError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"removed": name})

    add_lb_routes(app, daemon, control=control)
    app.router.add_get("/ipam", ipam)
    app.router.add_get("/nodes", nodes)
    if control:
        app.router.add_post("/nodes/remove", remove)
