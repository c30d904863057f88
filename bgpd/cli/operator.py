"""`kroute operator`: the command line of the LB-IPAM operator (one per cluster, leader
elected; run two for failover)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket

from aiohttp import web

from bgpd.cli.output import command
from bgpd.config.model import parse_listen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = command(
        subparsers,
        "operator",
        "assign LoadBalancer IPs in Kubernetes (one leader per cluster, by Lease)",
        "kroute operator                      # in a pod: its service account",
        "kroute operator --kubeconfig ~/.kube/config --identity laptop --health ''",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster)")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "kroute-system"),
        help="namespace of the Lease (default $POD_NAMESPACE or kroute-system)",
    )
    parser.add_argument("--lease-name", default="kroute-operator", help="the Lease's name")
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME", socket.gethostname()),
        help="this candidate's name (default $POD_NAME or the hostname)",
    )
    parser.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    parser.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    parser.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--no-default-class",
        action="store_true",
        help="handle only services with loadBalancerClass kroute.io/bgp",
    )
    parser.add_argument(
        "--health",
        default="0.0.0.0:9480",
        help="HOST:PORT for /healthz and /readyz ('' turns it off)",
    )
    parser.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> int:
    asyncio.run(run_operator(args))
    return 0


async def run_operator(args: argparse.Namespace) -> None:
    from bgpd.kube.api import api_client
    from bgpd.kube.lease import LeaseElector
    from bgpd.kube.operator import Operator, health_app

    api = api_client(args.kubeconfig)
    elector = LeaseElector(
        api,
        args.namespace,
        args.lease_name,
        args.identity,
        duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry=args.retry_period,
    )
    operator = Operator(api, elector, default_class=not args.no_default_class)
    runner = web.AppRunner(health_app(operator))
    await runner.setup()
    if args.health:
        host, port = parse_listen(args.health)
        await web.TCPSite(runner, host, port).start()
    task = asyncio.create_task(operator.run(), name="operator")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await runner.cleanup()
