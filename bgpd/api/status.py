"""The status server: `GET /status` (JSON) and health on a unix socket and TCP.

The unix socket is root-only (0600); the TCP listener is read-only by construction:
it only has GET routes. The report is built from the daemon's public state, so what
`kroute status` shows is exactly what the daemon acts on.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bgpd.api.cluster import add_cluster_routes
from bgpd.api.datapath import add_datapath_routes
from bgpd.api.metrics import CONTENT_TYPE, render
from bgpd.api.routes_view import routes_report
from bgpd.config.model import parse_listen
from bgpd.health import render as render_checks
from common.errors import KrouteError

if TYPE_CHECKING:
    from bgpd.daemon import Daemon

log = logging.getLogger(__name__)

DEFAULT_DRAIN_WAIT = 30.0


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def status_report(daemon: Daemon) -> dict[str, Any]:
    """The `/status` document (docs/operations.md lists every field)."""
    config = daemon.config
    advertised = sorted(
        {str(p) for advs in daemon.advertised.values() for p in advs if p in daemon.local_prefixes}
    )
    peers = [
        {
            "name": peer.peer.name,
            "address": str(peer.address),
            "asn": peer.peer.asn,
            "type": peer.peer.type,
            "state": peer.state,
            "since": _iso(peer.since),
            "info": peer.info,
            "gracefulRestartTime": peer.restart_time,
            "prefixesReceived": daemon.rib.received_count(peer.address),
            "prefixesStale": daemon.rib.stale_count(peer.address),
            "prefixesAdvertised": (
                len(daemon.advertised.get(peer.address, {})) if peer.state == "established" else 0
            ),
            "prefixesRejected": dict(sorted(peer.rejected.items())),
            "updatesReceived": peer.updates,
        }
        for peer in sorted(daemon.peers.values(), key=lambda p: (p.address.version, p.address))
    ]
    speaker = daemon.speaker.info()
    adopted = set(daemon.adopted)
    routes = [
        {
            "prefix": str(route.prefix),
            "nexthops": [str(h) for h in route.nexthops],
            "type": "blackhole" if route.is_blackhole else "unicast",
            "stale": route.prefix in adopted,
        }
        for route in sorted(
            daemon.kernel_routes.values(), key=lambda r: (r.prefix.version, r.prefix)
        )
    ]
    return {
        "node": config.node.name,
        "routerId": str(config.node.router_id),
        "asn": config.bgp.asn,
        "nodeIP": str(config.node.ip),
        "ready": daemon.ready,
        "drain": daemon.drain_state,
        "routeReflectorClusterId": daemon.cluster_id,
        "startedAt": _iso(daemon.started_at),
        "lastReconcile": _iso(daemon.last_reconcile),
        "speaker": {
            "running": speaker.running,
            "pid": speaker.pid,
            "restarts": speaker.restarts,
            "malformedLines": speaker.malformed_lines,
            "commandErrors": speaker.command_errors,
        },
        "peers": peers,
        "advertised": advertised,
        "kernelRoutes": routes,
        "adoptedRoutesPending": len(adopted),
        "reconcileErrors": daemon.reconcile_errors,
        "datapath": daemon.datapath.status() if daemon.datapath is not None else None,
        "routing": daemon.routing.status(config) if daemon.routing is not None else None,
        "loadBalancer": {
            "store": daemon.lb_sync.store.name,
            "storeError": daemon.lb_sync.store_error,
        },
    }


@web.middleware
async def _read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The TCP listener: GET (and HEAD) only, whatever routes other modules add."""
    if request.method not in ("GET", "HEAD"):
        error = "this listener is read-only; change the node over its unix socket"
        return web.json_response({"error": error}, status=405, headers={"Allow": "GET, HEAD"})
    return await handler(request)


def build_app(daemon: Daemon, *, control: bool) -> web.Application:
    """The read-only API; with `control` (the root-only unix socket) also the POST
    endpoints that change the node (drain, undrain)."""

    async def status(_: web.Request) -> web.Response:
        report = status_report(daemon)
        if daemon.cluster is not None:
            report["ipam"] = await daemon.cluster.report()
        return web.json_response(report)

    async def routes(_: web.Request) -> web.Response:
        return web.json_response(routes_report(daemon))

    async def livez(request: web.Request) -> web.Response:
        """Alive while every reconciler beats (bgpd.health); peers being down is not death."""
        checks = daemon.health.liveness()
        code, body = render_checks("livez", checks, verbose="verbose" in request.query)
        return web.Response(status=code, text=body)

    async def readyz(request: web.Request) -> web.Response:
        """Ready once every reconciler completed its first run (the first full reconcile)."""
        checks = daemon.health.readiness()
        code, body = render_checks("readyz", checks, verbose="verbose" in request.query)
        return web.Response(status=code, text=body)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=render(daemon), headers={"Content-Type": CONTENT_TYPE})

    async def drain(request: web.Request) -> web.Response:
        try:
            wait = float(request.query.get("wait", DEFAULT_DRAIN_WAIT))
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= 3600:
            return web.json_response({"error": "wait: seconds, 0-3600"}, status=400)
        try:
            daemon.drain(wait)
        except KrouteError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"drain": daemon.drain_state, "withdrawIn": wait})

    async def undrain(_: web.Request) -> web.Response:
        try:
            daemon.undrain()
        except KrouteError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"drain": daemon.drain_state})

    async def reload(_: web.Request) -> web.Response:
        errors = await daemon.reload()
        if errors:
            return web.json_response({"error": "; ".join(errors), "errors": errors}, status=400)
        return web.json_response({"reloaded": True, "peers": len(daemon.peers)})

    app = web.Application(middlewares=[] if control else [_read_only])
    add_cluster_routes(app, daemon, control=control)
    add_datapath_routes(app, daemon, control=control)
    app.router.add_get("/status", status)
    app.router.add_get("/routes", routes)
    app.router.add_get("/healthz", livez)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if control:
        app.router.add_post("/drain", drain)
        app.router.add_post("/undrain", undrain)
        app.router.add_post("/reload", reload)
    return app


class StatusServer:
    """Serves the app on the unix socket (0600) and, when configured, on TCP."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._control = web.AppRunner(build_app(daemon, control=True), access_log=None)
        self._public = web.AppRunner(build_app(daemon, control=False), access_log=None)

    async def start(self) -> None:
        status = self._daemon.config.status
        await self._control.setup()
        await self._public.setup()
        path = Path(status.socket)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(self._control, str(path)).start()
        finally:
            os.umask(old_umask)
        if status.listen:
            host, port = parse_listen(status.listen)
            await web.TCPSite(self._public, host, port, reuse_address=True).start()
        log.info("event=status-listening socket=%s tcp=%s", path, status.listen or "off")

    async def stop(self) -> None:
        await self._control.cleanup()
        await self._public.cleanup()
        with contextlib.suppress(FileNotFoundError):
            Path(self._daemon.config.status.socket).unlink()
