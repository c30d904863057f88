"""The client process of bench/ipam.py (`python -m bench.ipam_client`): reads one JSON
case per line from stdin, prepares it, says "ready", waits for "go", runs the allocations
through a store (or the raw write floor of the baseline), then reports its own monotonic
start and end stamps and the results on stdout."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ipam.allocator import ClusterPool
from ipam.etcd_store import EtcdIpamStore
from ipam.file_store import FileIpamStore
from ipam.store import TransactionalStore

NODE_POOL = ClusterPool((ipaddress.ip_network("10.0.0.0/8"),), mask_v4=24)  # 65,536 blocks
POD_POOL = ClusterPool((ipaddress.ip_network("10.0.0.0/8"),), mask_v4=16)  # 65,534 IPs/block
POD_NODE = "bench-node"
IFNAME = "eth0"


def open_store(backend: str, target: str, prefix: str) -> TransactionalStore:
    if backend == "file":
        return FileIpamStore(target)
    return EtcdIpamStore([target], prefix=prefix)


def payload(size: int) -> bytes:
    """A JSON document of exactly `size` bytes (at least 12)."""
    head, tail = b'{"pad": "', b'"}\n'
    return head + b"x" * max(size - len(head) - len(tail), 0) + tail


# -- the client process ------------------------------------------------------------------


async def client_case(cmd: dict[str, Any]) -> None:
    """Prepare one case, say "ready", wait for "go", run it, report stamps and results."""
    backend, mode, kind = cmd["backend"], cmd["mode"], cmd["kind"]
    target, prefix, items = cmd["target"], cmd["prefix"], cmd["items"]
    results: list[str] = []
    closers: list[Any] = []
    try:
        if mode == "store":
            store = open_store(backend, target, prefix)
            closers.append(store.close)
            await store.snapshot()  # connect (etcd) and warm the page cache (file)

            async def run() -> None:
                for item in items:
                    if kind == "node":
                        blocks = await store.allocate_node_blocks(NODE_POOL, item)
                        results.append(",".join(str(b) for b in blocks))
                    else:
                        ip = await store.allocate_pod_ip(POD_POOL, POD_NODE, item, IFNAME)
                        results.append(str(ip))

        elif backend == "file":
            sizes = cmd["sizes"]
            path = Path(target)
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            lock_fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            closers.append(lambda: os.close(lock_fd))

            def cycles() -> None:
                for size in sizes:
                    data = payload(size)  # microseconds; the store serialises its document
                    fcntl.flock(lock_fd, fcntl.LOCK_EX)
                    try:
                        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
                        try:
                            view = memoryview(data)
                            while view:
                                view = view[os.write(fd, view) :]
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                        os.replace(tmp, path)
                        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                        try:
                            os.fsync(dfd)
                        finally:
                            os.close(dfd)
                    finally:
                        fcntl.flock(lock_fd, fcntl.LOCK_UN)

            async def run() -> None:
                cycles()

        else:
            import aetcd

            sizes = cmd["sizes"]
            host, port = target.rsplit("//", 1)[1].rsplit(":", 1)
            client = aetcd.Client(host=host, port=int(port))
            closers.append(client.close)
            key = f"{prefix}/put".encode()
            await client.get(key)  # connect before the clock starts

            async def run() -> None:
                for size in sizes:
                    await client.put(key, payload(size))

        emit({"ready": True})
        go = await asyncio.to_thread(sys.stdin.readline)
        if go.strip() != "go":
            raise RuntimeError(f"expected 'go', got {go!r}")
        t0 = time.monotonic()
        await run()
        t1 = time.monotonic()
        emit({"t0": t0, "t1": t1, "results": results})
    finally:
        for close in reversed(closers):
            outcome = close()
            if asyncio.iscoroutine(outcome):
                await outcome


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def client_main() -> int:
    """Read one JSON case per line from stdin until EOF."""
    for line in sys.stdin:
        try:
            asyncio.run(client_case(json.loads(line)))
        except Exception as e:  # report it; the parent stops the run
            emit({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(client_main())
