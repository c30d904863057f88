"""`python -m lab.ipam_tool CONFIG NODE=CONTAINER_ID ...`: allocate lab nodes' blocks and
pod IPs from the store a node config names, printing JSON.

The lab must know each node's block and its pod's IP before the daemons start (to wire
the pods), and must get them from exactly the store and pool the daemons use, or a node
would route to a block its daemon never announces. So this loads a node config the way
`kroute run` does (`bgpd.config.model.load_config`, `bgpd.cluster.state.make_store` and
`cluster_pool`) and asks the store, in the order given: node blocks are idempotent, so
the daemon later gets the same block back. It runs inside a lab namespace (through
nsenter), where the lab's etcd is reachable; the file store works from there too, so both
stores share this one code path.

Output: {"NODE": {"blocks": [...], "podCIDR": "10.201.0.0/24", "podIP": "10.201.0.1"}}.
Exit 0 on success, 1 when the store refused or failed (message on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from bgpd.cluster.state import cluster_pool, make_store
from bgpd.config.model import load_config
from common.errors import KrouteError
from ipam.allocator import ClusterPool
from ipam.store import IpamStore

POD_IFNAME = "eth0"


def _pair(text: str) -> tuple[str, str]:
    node, sep, container = text.partition("=")
    if not sep or not node or not container:
        raise argparse.ArgumentTypeError(f"{text!r}: write NODE=CONTAINER_ID")
    return node, container


async def allocate(
    store: IpamStore, pool: ClusterPool, pairs: Sequence[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """Each node's blocks (in the order given), then its pod's IP on eth0 (IPv4)."""
    result: dict[str, dict[str, Any]] = {}
    try:
        for node, container in pairs:
            blocks = await store.allocate_node_blocks(pool, node)
            ip = await store.allocate_pod_ip(pool, node, container, POD_IFNAME)
            v4 = next(b for b in blocks if b.version == 4)
            result[node] = {
                "blocks": [str(b) for b in blocks],
                "podCIDR": str(v4),
                "podIP": str(ip),
            }
    finally:
        await store.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.ipam_tool",
        description="allocate lab nodes' pod CIDR blocks and pod IPs; prints JSON",
    )
    parser.add_argument("config", help="a lab node's kroute.yaml (store and pool come from it)")
    parser.add_argument("pairs", nargs="+", type=_pair, metavar="NODE=CONTAINER_ID")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        pool = cluster_pool(config)
        if pool is None:
            raise KrouteError(
                f"{args.config}: ipam.mode is {config.ipam.mode}, not cluster-pool; "
                "the lab allocates only from a cluster pool"
            )
        result = asyncio.run(allocate(make_store(config), pool, args.pairs))
    except KrouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
