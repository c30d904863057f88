"""HTTP endpoints of the datapath: `GET /datapath` (what `kroute datapath` shows) and,
on the unix socket only, `POST /datapath/pods?ip=IP&hostIf=VETH` (kroute-cni's ADD:
the pod is mapped and its veth attached before the answer) and
`POST /datapath/pods/remove?ip=IP` (DEL)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING

from aiohttp import web

from common.errors import KrouteError

if TYPE_CHECKING:
    from bgpd.daemon import Daemon


def add_datapath_routes(app: web.Application, daemon: Daemon, *, control: bool) -> None:
    async def show(_: web.Request) -> web.Response:
        if daemon.datapath is None:
            return web.json_response({"error": "this daemon runs without a datapath"}, status=404)
        return web.json_response(await asyncio.to_thread(daemon.datapath.describe))

    async def add_pod(request: web.Request) -> web.Response:
        dp = daemon.datapath
        ip, host_if = request.query.get("ip", ""), request.query.get("hostIf", "")
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            return web.json_response({"error": f"ip: {ip!r} is not an IPv4 address"}, status=400)
        if not 1 <= len(host_if) <= 15:
            return web.json_response({"error": "hostIf: give the pod's host veth"}, status=400)
        if dp is None:
            return web.json_response({"hostRouting": "none"})
        try:
            mode = await asyncio.to_thread(dp.add_pod, ip, host_if)
        except KrouteError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        daemon.request_reconcile()
        return web.json_response({"hostRouting": mode})

    async def remove_pod(request: web.Request) -> web.Response:
        dp = daemon.datapath
        ip = request.query.get("ip", "")
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            return web.json_response({"error": f"ip: {ip!r} is not an IPv4 address"}, status=400)
        removed = dp is not None and await asyncio.to_thread(dp.remove_pod, ip)
        return web.json_response({"removed": removed})

    app.router.add_get("/datapath", show)
    if control:
        app.router.add_post("/datapath/pods", add_pod)
        app.router.add_post("/datapath/pods/remove", remove_pod)
