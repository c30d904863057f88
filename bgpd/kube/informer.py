"""List + watch of one resource: the blocking client runs in a thread that only puts
(kind, payload) items on an asyncio queue; the loop side keeps the cache.

The thread lists once, then watches from the list's resourceVersion with bookmarks and
resumes from the last resourceVersion it saw whenever the stream ends or breaks; a 410
Gone (the version was compacted away) makes it list again, and the cache is replaced
wholesale. While the API server cannot be reached the cache keeps its last state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from bgpd.kube.api import REQUEST_TIMEOUT, Obj, key, raw

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 60  # seconds; the server ends each watch after this and we resume
BACKOFF_MAX = 5.0


def backoff(failures: int) -> float:
    return min(BACKOFF_MAX, 0.2 * 2.0 ** min(failures, 10)) * (0.5 + random.random() / 2)


class Informer:
    """The objects of one resource by "namespace/name", kept current from a watch.

    `lister(**kwargs)` is the client's list function with its positional arguments
    bound (`functools.partial`). `changed` is set after every change once synced."""

    def __init__(
        self, name: str, lister: Callable[..., Any], changed: asyncio.Event, **selectors: str
    ) -> None:
        self.name = name
        self.objects: dict[str, Obj] = {}
        self.synced = False
        self.connected = False
        self._lister = lister
        self._selectors = selectors
        self._changed = changed
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._thread.start()
        self._task = asyncio.create_task(self._apply(), name=f"informer-{self.name}")

    async def close(self) -> None:
        self._stop.set()
        current = self._watch
        if current is not None:
            current.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._thread.join, REQUEST_TIMEOUT)

    # -- the loop side ------------------------------------------------------------

    async def _apply(self) -> None:
        while True:
            kind, payload = await self._queue.get()
            if kind == "connected":
                self.connected = bool(payload)
                continue
            if kind == "sync":
                changed = payload != self.objects or not self.synced
                self.objects, self.synced = payload, True
            elif kind == "DELETED":
                changed = self.objects.pop(key(payload), None) is not None
            else:
                changed = self.objects.get(key(payload)) != payload
                self.objects[key(payload)] = payload
            if changed and self.synced:
                self._changed.set()

    # -- the thread side ------------------------------------------------------------

    def _put(self, kind: str, payload: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: we are stopping
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, payload))

    def _run(self) -> None:
        rv: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = raw(
                        self._lister(
                            **self._selectors,
                            _preload_content=False,
                            _request_timeout=REQUEST_TIMEOUT,
                        )
                    )
                    rv = str(listing["metadata"]["resourceVersion"])
                    self._put("connected", True)
                    self._put("sync", {key(o): o for o in listing.get("items") or []})
                    log.info("event=kube-listed resource=%s resource_version=%s", self.name, rv)
                rv = self._follow(rv)
                if failures:
                    log.info("event=kube-watch-resumed resource=%s", self.name)
                failures = 0
            except ApiException as exc:
                if exc.status == 410:
                    log.info("event=kube-watch-expired resource=%s action=relist", self.name)
                    rv = None
                    continue
                failures += 1
                self._failed(failures, f"HTTP {exc.status} {exc.reason}")
            except (urllib3.exceptions.HTTPError, OSError, ValueError, KeyError) as exc:
                failures += 1
                self._failed(failures, repr(exc))
            if failures:
                self._stop.wait(backoff(failures))

    def _follow(self, rv: str) -> str:
        """Watch from `rv` until the stream ends; returns the last resourceVersion seen."""
        self._watch = watch.Watch()
        stream = self._watch.stream(
            self._opened,
            **self._selectors,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT,
            _request_timeout=(REQUEST_TIMEOUT, WATCH_TIMEOUT + REQUEST_TIMEOUT),
        )
        for event in stream:
            obj: Obj = event["raw_object"]
            rv = str(obj["metadata"]["resourceVersion"])
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                self._put(event["type"], obj)
            if self._stop.is_set():
                break
        return rv

    def _opened(self, *args: Any, **kwargs: Any) -> Any:
        """The list function, saying "connected" once the server answered. Without the
        client's docstring, so the watch hands over raw objects (no model decoding)."""
        response = self._lister(*args, **kwargs)
        self._put("connected", True)
        return response

    def _failed(self, failures: int, error: str) -> None:
        self._put("connected", False)
        if failures == 1:
            log.warning("event=kube-watch-interrupted resource=%s error=%s", self.name, error)
