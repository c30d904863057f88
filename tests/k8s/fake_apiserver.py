"""An in-process Kubernetes API server for tests: REST and watch for the resources
kroute uses (`tests.k8s.store.RESOURCES`), reachable from the test's own network
namespace and from inside namespaces the test made (one listener per namespace, all on
the same port, so a daemon in `nsenter --net=NS` reaches it at 127.0.0.1:PORT).

What it speaks, as a real server does: lists with `metadata.resourceVersion`, label and
field selectors, watches as chunked JSON lines (`ADDED`/`MODIFIED`/`DELETED`, `BOOKMARK`
with `allowWatchBookmarks`, an `ERROR` Status 410 for a compacted resourceVersion,
`timeoutSeconds`), create/get/update/patch/delete with 404/409/422 Status errors, 409
on a stale resourceVersion, and the status subresource. `down()` drops every listener
and open watch (an outage); `up()` brings them back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.k8s.store import (
    RESOURCES,
    ApiError,
    Event,
    Obj,
    Resource,
    Store,
    json_patch,
    merge_patch,
    selected,
)

CLONE_NEWNET = 0x40000000
BY_PATH = {(r.prefix, r.plural): r for r in RESOURCES}


def socket_in_netns(netns: str | None, host: str, port: int) -> socket.socket:
    """A listening TCP socket in namespace `netns` (None: ours), made in a short-lived
    thread that enters the namespace, so no other thread ever changes namespace."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            if netns is not None:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/var/run/netns/{netns}") as ns:
                    if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns {netns}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
            made.append(sock)
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=make)  # ends with the namespace it entered
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class FakeApiServer:
    """Runs on its own event loop in a thread; every public method is thread-safe."""

    def __init__(self, bookmark_interval: float = 1.0) -> None:
        self.store = Store()
        self.bookmark_interval = bookmark_interval
        self.port = 0
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every request
        self.errors: dict[int, int] = {}  # HTTP status -> how many error answers
        self._netns: list[str | None] = []
        self._sites: list[web.SockSite] = []
        self._watches: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        self._call(self._runner.setup())
        self.up_ = True

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # -- listeners -----------------------------------------------------------------

    def listen(self, netns: str | None = None) -> str:
        """Serve in `netns` (None: the test's namespace) at 127.0.0.1:PORT; returns the URL."""
        sock = socket_in_netns(netns, "127.0.0.1", self.port)
        self.port = sock.getsockname()[1]
        self._netns.append(netns)
        if self.up_:
            self._call(self._start_site(sock))
        else:
            sock.close()
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start_site(self, sock: socket.socket) -> None:
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._sites.append(site)

    def down(self) -> None:
        """An outage: every listener closed, every open watch cut."""
        self.up_ = False

        async def stop() -> None:
            for task in list(self._watches):
                task.cancel()
            for site in self._sites:
                await site.stop()
            self._sites = []
            server = self._runner.server
            for connection in server.connections if server is not None else ():
                connection.force_close()  # keep-alive connections die with the server

        self._call(stop())

    def up(self) -> None:
        """Back on the same port in every namespace."""
        self.up_ = True
        for netns in self._netns:
            self._call(self._start_site(socket_in_netns(netns, "127.0.0.1", self.port)))

    def close(self) -> None:
        self.down()
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing at this server (plain HTTP, no credentials)."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "test"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # -- HTTP --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        try:
            res, namespace, name, sub = route(request.path)
            return await self._dispatch(request, res, namespace, name, sub)
        except ApiError as exc:
            self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
            return web.json_response(exc.status(), status=exc.code)

    async def _dispatch(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str
    ) -> web.StreamResponse:
        store, query, method = self.store, request.query, request.method
        ns = namespace or ""
        if not name:
            if method == "GET" and query.get("watch") in ("true", "1"):
                return await self._watch(request, res, namespace)
            if method == "GET":
                items, rv = store.list(
                    res, namespace, query.get("labelSelector", ""), query.get("fieldSelector", "")
                )
                return web.json_response(
                    {
                        "kind": f"{res.kind}List",
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(rv)},
                        "items": items,
                    }
                )
            if method == "POST":
                if res.namespaced and namespace is None:
                    raise ApiError(405, "MethodNotAllowed", f"create {res.plural} in a namespace")
                return web.json_response(store.create(res, ns, await _body(request)), status=201)
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        if method == "GET":
            return web.json_response(store.get(res, ns, name))
        if method == "PUT":
            return web.json_response(store.update(res, ns, name, await _body(request), sub))
        if method == "PATCH":
            patch = await _body(request)
            kind = request.content_type
            if kind == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise ApiError(400, "BadRequest", "a json patch is a list of operations")
                ops: list[Obj] = patch
                obj = store.patch(res, ns, name, lambda cur: json_patch(cur, ops), sub)
            elif kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                obj = store.patch(res, ns, name, lambda cur: merge_patch(cur, patch), sub)
            else:
                raise ApiError(415, "UnsupportedMediaType", f"patch content type {kind!r}")
            return web.json_response(obj)
        if method == "DELETE":
            return web.json_response(store.delete(res, ns, name))
        raise ApiError(405, "MethodNotAllowed", f"{method} on an object")

    async def _watch(
        self, request: web.Request, res: Resource, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        rv_text = query.get("resourceVersion", "")
        rv = int(rv_text) if rv_text not in ("", "0") else None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds", "0")) or None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def listener(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            backlog = self.store.subscribe(res, namespace, rv, listener)
        except ApiError as exc:  # a real server answers 200 and sends the error as an event
            await _send(response, {"type": "ERROR", "object": exc.status()})
            return response
        task = asyncio.current_task()
        assert task is not None
        self._watches.add(task)
        sent_rv = rv or self.store.rv
        try:
            for event in backlog:
                await self._send_event(response, event, namespace, labels, fields)
                sent_rv = max(sent_rv, event.rv)
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        async with asyncio.timeout(self.bookmark_interval):
                            event = await queue.get()
                    except TimeoutError:
                        if bookmarks:
                            meta = {"resourceVersion": str(sent_rv)}
                            obj = {
                                "kind": res.kind,
                                "apiVersion": res.api_version,
                                "metadata": meta,
                            }
                            await _send(response, {"type": "BOOKMARK", "object": obj})
                        continue
                    sent_rv = event.rv
                    if event.resource == res:
                        await self._send_event(response, event, namespace, labels, fields)
        except TimeoutError:
            pass  # timeoutSeconds: the client resumes from its last resourceVersion
        except ConnectionError:
            pass  # the client went away (aiohttp's reset errors are ConnectionErrors)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if request.transport is not None:
                    request.transport.abort()
            raise
        finally:
            self.store.unsubscribe(listener)
            self._watches.discard(task)
        return response

    @staticmethod
    async def _send_event(
        response: web.StreamResponse, event: Event, namespace: str | None, labels: str, fields: str
    ) -> None:
        meta = event.obj.get("metadata", {})
        if namespace is not None and meta.get("namespace") != namespace:
            return
        if selected(event.obj, labels, fields):
            await _send(response, {"type": event.type, "object": event.obj})


async def _send(response: web.StreamResponse, doc: Obj) -> None:
    await response.write(json.dumps(doc).encode() + b"\n")


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        raise ApiError(400, "BadRequest", "the body is not JSON") from None


def route(path: str) -> tuple[Resource, str | None, str, str]:
    """(resource, namespace or None, name, subresource) of an API path; 404 otherwise."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) >= 3:
        prefix, rest = "/" + "/".join(parts[:2]), parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find {path}")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    res = BY_PATH.get((prefix, rest[0]))
    if (
        res is None
        or len(rest) > 3
        or (len(rest) == 3 and not (rest[2] == "status" and res.status))
    ):
        raise ApiError(404, "NotFound", f"the server could not find {path}")
    if res.namespaced != (namespace is not None) and len(rest) > 1:
        raise ApiError(404, "NotFound", f"{res.plural} is namespaced={res.namespaced}: {path}")
    return res, namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""


@contextlib.contextmanager
def fake_apiserver(bookmark_interval: float = 1.0) -> Iterator[FakeApiServer]:
    """A running fake API server listening in the test's namespace; closed on exit."""
    server = FakeApiServer(bookmark_interval)
    try:
        server.listen()
        yield server
    finally:
        server.close()


__all__ = ["FakeApiServer", "fake_apiserver", "socket_in_netns"]
