"""IpamStore in one JSON file: the default for one machine and for the lab.

Every operation runs the whole read-modify-write under an exclusive `flock` on
`<path>.lock` (a separate file that is never replaced, so every process locks the same
inode), and writes the new state to `<path>.tmp-<pid>`, fsyncs it, renames it over
`<path>` and fsyncs the directory. A process killed at any point therefore leaves the
old file or the new one, never half of one, and the kernel drops its lock. Works
across processes and network namespaces (the lab's nodes share one file); not across
machines (NFS locking is not trusted here; use the etcd store).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ipam.allocator import IpamState
from ipam.store import Mutation, StoreCorruptError, StoreError, T, TransactionalStore

log = logging.getLogger(__name__)


class FileIpamStore(TransactionalStore):
    """IPAM state in `path`, safe for many processes on one machine."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout
        self._closed = False

    async def _transact(self, fn: Mutation[T]) -> T:
        self._check_open()
        return await asyncio.to_thread(self._transact_sync, fn)

    async def snapshot(self) -> IpamState:
        """The state as last written; no lock needed, since writes replace atomically."""
        self._check_open()
        return await asyncio.to_thread(self._read)

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"IPAM file store {self.path} is closed; open a new one")

    def _transact_sync(self, fn: Mutation[T]) -> T:
        with self._locked():
            state = self._read()
            new_state, result = fn(state)
            if new_state != state:
                self._write(new_state)
            return result

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreError(
                f"IPAM lock file {self.lock_path}: {e.strerror}; check that the directory "
                "exists and is writable by kroute"
            ) from e
        try:
            self._acquire(fd)
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def _acquire(self, fd: int) -> None:
        # Polling with LOCK_NB (not a blocking flock in a thread) so a hung holder turns
        # into a clear error instead of a daemon stuck for ever.
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    raise StoreError(f"IPAM lock {self.lock_path}: {e.strerror}") from e
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"IPAM lock {self.lock_path} is held by another process for more than "
                    f"{self.lock_timeout:g} s; find it with `fuser -v {self.lock_path}` and "
                    "stop it if it hangs"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    def _read(self) -> IpamState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return IpamState()
        except (OSError, UnicodeDecodeError) as e:
            raise StoreCorruptError(
                f"IPAM state file {self.path} is unreadable ({e}); fix its permissions or "
                "restore it from a backup"
            ) from e
        try:
            return IpamState.from_json(text)
        except ValueError as e:
            raise StoreCorruptError(
                f"IPAM state file {self.path} is corrupt: {e}. kroute does not reset it, as "
                "that could hand addresses out twice: restore it from a backup or repair it "
                "(delete it only when no node or pod holds an address from it)"
            ) from None

    def _write(self, state: IpamState) -> None:
        self._remove_stale_temps()
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        data = state.to_json().encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(
                f"IPAM state file {self.path}: writing failed ({e.strerror}); the previous "
                "state is intact. Free disk space or fix permissions, then retry"
            ) from e

    def _remove_stale_temps(self) -> None:
        # Temp files exist only inside the lock; one seen while we hold it was left by a
        # process killed mid-write.
        prefix = self.path.name + ".tmp-"
        for entry in os.scandir(self.path.parent):
            if entry.name.startswith(prefix):
                log.info("ipam removing stale temp file path=%s", entry.path)
                Path(entry.path).unlink(missing_ok=True)
