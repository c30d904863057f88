"""An allocator process for the file store's concurrency tests.

`python tests/ipam_workers.py STATE_FILE INDEX COUNT [--churn]` runs COUNT operations
(`plan`) against the file store and prints one JSON line per committed operation, flushed,
so a test that kills the worker with SIGKILL knows which operations certainly happened.
Without --churn every operation is an allocation (node blocks or pod IPs); with it,
releases of pods and nodes are mixed in.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from typing import Any

from common.errors import AllocationError
from ipam.allocator import ClusterPool
from ipam.file_store import FileIpamStore

POOL = ClusterPool(
    (ipaddress.ip_network("10.0.0.0/14"), ipaddress.ip_network("fd00::/100")),
    mask_v4=22,
    mask_v6=118,
)
SHARED = "shared"  # every worker takes pod IPs from this node's blocks: real contention


def plan(index: int, k: int, churn: bool) -> tuple[Any, ...]:
    """Operation number k of worker `index`; deterministic so tests can replay logs."""
    own = f"w{index}-n{k // 10}"
    if k % 10 == 0:
        return ("node", own)
    if churn and k % 10 == 5 and k >= 20:
        return ("unnode", f"w{index}-n{k // 10 - 2}")
    if churn and k % 3 == 0:
        return ("unpod", SHARED, f"w{index}-c{k - 7}", "eth0")
    if k % 2 == 0:
        return ("pod", SHARED, f"w{index}-c{k}", "eth0", 4 if k % 4 == 0 else 6)
    return ("pod", own, f"w{index}-c{k}", "eth0", 4 if k % 4 == 1 else 6)


async def run(path: str, index: int, count: int, churn: bool) -> None:
    store = FileIpamStore(path)
    for k in range(count):
        op = plan(index, k, churn)
        line: dict[str, Any] = {"k": k, "op": op[0]}
        try:
            if op[0] == "node":
                line["result"] = [str(b) for b in await store.allocate_node_blocks(POOL, op[1])]
            elif op[0] == "unnode":
                await store.release_node(op[1])
            elif op[0] == "unpod":
                line["result"] = await store.release_pod_ip(*op[1:])
            else:
                line["result"] = str(await store.allocate_pod_ip(POOL, *op[1:]))
        except AllocationError as e:
            line["error"] = str(e)
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("index", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--churn", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.path, args.index, args.count, args.churn))


if __name__ == "__main__":
    main()
