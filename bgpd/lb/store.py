"""Where the cluster-wide LB-IPAM document (`lbipam.shared.LbDocument`) lives.

One small Protocol, `LbStore`: `transact(fn)` applies a pure step to the current
document atomically (etcd: a txn comparing the key's mod_revision, retried when another
node won; file: the whole read-modify-write under `flock`), and `changes()` yields once
at start and after every change anyone made. Two implementations: `FileLbStore` (one
JSON file shared by the nodes of one machine: the lab, a single host) and `EtcdLbStore`
(`bgpd.lb.etcd_store`); unit tests use `tests.fakes.lb_store.MemoryLbStore`.

Which one a daemon uses follows from its config: `bgpd.lb.configured_store`.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, TypeVar

from common.errors import AllocationError
from lbipam.shared import LbDocument

T = TypeVar("T")
Step = Callable[[LbDocument], tuple[LbDocument, T]]
FILE_POLL = 0.3  # seconds between looks at the file store for other writers


class LbStoreError(AllocationError):
    """The LB-IPAM store could not be read or written (unreachable, locked, corrupt)."""


class LbStore(Protocol):
    name: str

    async def transact(self, step: Step[T]) -> T:
        """Apply `step` to the current document atomically; write only if it changed.
        Exceptions from `step` propagate and nothing is written."""
        ...

    def changes(self) -> AsyncIterator[None]:
        """Once now, then after every change to the document (by anyone)."""
        ...

    async def close(self) -> None: ...


class FileLbStore:
    """The document in one JSON file under an exclusive flock on `FILE.lock`, replaced
    atomically (temp file, fsync, rename): a kill at any point leaves the old or the
    new document. Shared by processes (and network namespaces) of one machine."""

    def __init__(self, path: Path, *, lock_timeout: float = 30.0) -> None:
        self.path = path
        self.name = f"file {path}"
        self._lock = path.with_name(path.name + ".lock")
        self._lock_timeout = lock_timeout

    async def transact(self, step: Step[T]) -> T:
        return await asyncio.to_thread(self._transact, step)

    def _transact(self, step: Step[T]) -> T:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._wait_for_lock(fd)
            old = self.read()
            new, result = step(old)
            if new != old:
                self._replace(new.to_json().encode())
            return result
        finally:
            os.close(fd)  # releases the flock

    def _wait_for_lock(self, fd: int) -> None:
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno != errno.EINTR:
                    raise LbStoreError(f"LB-IPAM lock {self._lock}: {e.strerror}") from e
            if time.monotonic() > deadline:
                raise LbStoreError(
                    f"LB-IPAM lock {self._lock} held by another process for "
                    f"{self._lock_timeout:g} s; find it with `fuser -v {self._lock}`"
                )
            time.sleep(0.002)

    def read(self) -> LbDocument:
        if not self.path.exists():
            return LbDocument()
        try:
            return LbDocument.from_json(self.path.read_bytes().decode())
        except OSError as e:
            raise LbStoreError(f"LB-IPAM store {self.path} is unreadable: {e}") from None
        except ValueError as e:  # UnicodeDecodeError too
            raise LbStoreError(
                f"LB-IPAM store {self.path} is corrupt: {e}; restore it from a backup "
                "(kroute never resets it: that could hand an address out twice)"
            ) from None

    def _replace(self, data: bytes) -> None:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _sync_directory(self.path.parent)  # the rename itself survives a crash
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise LbStoreError(
                f"LB-IPAM store {self.path}: writing failed ({e.strerror}); the old "
                "document is intact. Free disk space or fix permissions"
            ) from e

    async def changes(self) -> AsyncIterator[None]:
        """Polls the file's identity (inode, size, mtime): writers replace it whole."""
        last: tuple[int, int, int] | None = None
        first = True
        while True:
            try:
                st = self.path.stat()
                now: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                now = None
            if first or now != last:
                first, last = False, now
                yield None
            await asyncio.sleep(FILE_POLL)

    async def close(self) -> None:
        return None


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
