"""A separate process that allocates pod IPs from an etcd IPAM store, for concurrency tests.

Usage: etcd_ipam_worker.py ENDPOINT NODE WORKER COUNT [--cidr C] [--mask M] [--tls CA CERT KEY]
Prints "ready" once connected, then one "CONTAINER IP" line per allocation, flushed at once
so the parent sees every allocation that completed even if it kills this process.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys

from ipam.allocator import ClusterPool
from ipam.etcd_store import EtcdIpamStore


async def run(args: argparse.Namespace) -> None:
    tls = {}
    if args.tls:
        tls = dict(zip(("ca_file", "cert_file", "key_file"), args.tls, strict=True))
    store = EtcdIpamStore([args.endpoint], **tls)
    pool = ClusterPool((ipaddress.ip_network(args.cidr),), mask_v4=args.mask)
    try:
        await store.allocate_node_blocks(pool, args.node)
        print("ready", flush=True)
        for i in range(args.count):
            container = f"w{args.worker}-c{i}"
            ip = await store.allocate_pod_ip(pool, args.node, container, "eth0")
            sys.stdout.write(f"{container} {ip}\n")
            sys.stdout.flush()
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("node")
    parser.add_argument("worker", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--cidr", default="10.244.0.0/16")
    parser.add_argument("--mask", type=int, default=20)
    parser.add_argument("--tls", nargs=3, metavar=("CA", "CERT", "KEY"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
