"""HTTP endpoints for LoadBalancer IPs: `GET /pools`, `GET /services`, and on the unix
socket only the changes behind `kroute pool|service apply|delete`:
`POST /pools/apply` and `POST /services/apply` (JSON body `{"pools": [...]}` /
`{"services": [...]}`), `POST /pools/delete?name=N`, `POST /services/delete?name=NS/N`.

Answers: 200 with what changed; 422 with `errors` (one line per problem, naming the
object and field) when a document is invalid, and then nothing was written; 409 for a
config-file object (read-only here); 404 for an unknown one; 503 when the store fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bgpd.lb.allocation import LbView
from common.errors import KrouteError
from lbipam import Pool, Service
from lbipam.documents import DocumentError
from lbipam.shared import Change, ReadOnlyObjectError, UnknownObjectError

if TYPE_CHECKING:
    from bgpd.daemon import Daemon


async def _changed(action: Awaitable[dict[str, Change]]) -> web.Response:
    try:
        changes = await action
    except DocumentError as exc:
        return web.json_response({"error": str(exc), "errors": exc.errors}, status=422)
    except ReadOnlyObjectError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except UnknownObjectError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except KrouteError as exc:
        return web.json_response({"error": str(exc)}, status=503)
    return web.json_response({"changes": changes})


def _apply(field: str, apply: Callable[[Any], Awaitable[dict[str, Change]]]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or field not in body:
            return web.json_response(
                {"error": f"send JSON {{{field!r}: [...]}}", "errors": [f"{field}: missing"]},
                status=422,
            )
        return await _changed(apply(body[field]))

    return handler


def _delete(delete: Callable[[str], Awaitable[dict[str, Change]]]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return await _changed(delete(request.query.get("name", "")))

    return handler


def pool_row(pool: Pool, view: LbView, from_config: bool, now: float) -> dict[str, Any]:
    """One row of `GET /pools` (`kroute pools`); AGE counts from the store's creation."""
    status = view.result.pools[pool.name]
    return {
        "name": pool.name,
        "source": "config" if from_config else "store",
        "disabled": status.disabled,
        "conflictingWith": status.conflicting_with,
        "available": status.available,
        "used": status.used,
        "total": status.total,
        "blocks": [str(b) for b in pool.blocks],
        "created": pool.created,
        "age": max(0.0, now - pool.created),
    }


def service_row(service: Service, view: LbView, from_config: bool) -> dict[str, Any]:
    """One row of `GET /services` (`kroute services`)."""
    status = view.result.services[service.key]
    announcers = {n for ip in status.ips for n in view.announcers.get(ip, ())}
    return {
        "service": service.key,
        "source": "config" if from_config else "store",
        "ips": [str(ip) for ip in status.ips],
        "pools": list(status.pools),
        "trafficPolicy": service.traffic_policy,
        "announcedBy": sorted(announcers),
        "servedHere": [str(ip) for ip in status.ips if ip in view.served],
        "conflicting": status.conflicting,
        "reasons": [f"{r.code}: {r.message}" for r in status.reasons],
    }


def add_lb_routes(app: web.Application, daemon: Daemon, *, control: bool) -> None:
    async def pools(_: web.Request) -> web.Response:
        view, config = daemon.lb.view, daemon.lb.reserved_pools()
        if view is None:
            return web.json_response([])
        ordered = sorted(view.round.pools, key=lambda p: p.name)
        now = daemon.clock()
        return web.json_response([pool_row(p, view, p.name in config, now) for p in ordered])

    async def services(_: web.Request) -> web.Response:
        view, config = daemon.lb.view, daemon.lb.reserved_services()
        if view is None:
            return web.json_response([])
        ordered = sorted(view.round.services, key=lambda s: s.key)
        return web.json_response([service_row(s, view, s.key in config) for s in ordered])

    app.router.add_get("/pools", pools)
    app.router.add_get("/services", services)
    if control:
        sync = daemon.lb_sync
        app.router.add_post("/pools/apply", _apply("pools", sync.apply_pools))
        app.router.add_post("/services/apply", _apply("services", sync.apply_services))
        app.router.add_post("/pools/delete", _delete(sync.delete_pool))
        app.router.add_post("/services/delete", _delete(sync.delete_service))
