"""`kroute lab up|down|status|exec|restart|add-node|remove-node`: the namespace lab as a
user drives it.

`register(subparsers)` adds the group to `kroute`; `python -m bgpd.cli.lab` runs it alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bgpd.cli.output import add_output_flag, command, render
from lab import lab, net, nodes, rows, upstream
from lab.plan import DATAPATHS, DEFAULT_NAME, DEFAULT_NODES, STORES, UPSTREAM_KINDS, LabError
from lab.subnets import OVERLAYS, SUBNET_COUNTS

EXIT_FAIL = 1


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    created = lab.up(
        args.name,
        args.nodes,
        args.timeout,
        _say,
        upstream=args.upstream,
        reflectors=args.reflectors,
        store=args.store,
        datapath=args.datapath,
        subnets=args.subnets,
        overlay=args.overlay,
    )
    _say(f"explore: kroute lab status --name {args.name}")
    _say(f"         kroute lab exec {args.name}-n1 -- kroute peers")
    if args.upstream:
        pod_ip = created.plan.nodes[0].pod_ip
        _say(f"         kroute lab exec {args.name}-ext -- ping -c 3 {pod_ip}")
    _say(f"tear down: kroute lab down --name {args.name}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    warnings = lab.down(args.name, _say)
    for warning in warnings:
        print(warning, file=sys.stderr)
    return EXIT_FAIL if warnings else 0


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 only when every listed node's daemon (and upstream) runs with all its peers
    established. JSON lists the nodes; a lab's upstream is in each of its rows."""
    labs = [lab.require_lab(args.name)] if args.name else lab.all_labs()
    ups = {each.plan.name: upstream.row(each.plan, each.router()) for each in labs}
    found = [row for each in labs for row in rows.node_rows(each)]
    for row in found:
        row["upstream"] = ups[row["lab"]]
    if args.output != "table":
        print(render(found, args.output, str))
    elif not labs:
        print("no lab is running; start one with `kroute lab up`")
    else:
        _print_table(labs, found)
    checked = [*found, *(u for u in ups.values() if u is not None)]
    healthy = all(r["alive"] and r["peers"] and r["established"] == r["peers"] for r in checked)
    healthy = healthy and all(rows.store_row(each)["alive"] for each in labs)
    return 0 if healthy else EXIT_FAIL


def _store_text(each: lab.Lab) -> str:
    store = rows.store_row(each)
    if store["kind"] == "file":
        return f"IPAM store file {store['file']}, static node list"
    state = "alive" if store["alive"] else "dead"
    return (
        f"IPAM store and membership etcd {store['url']} in {store['namespace']}, "
        f"pid {store['pid'] or '-'} ({state})"
    )


def _print_table(labs: list[lab.Lab], table_rows: list[dict[str, Any]]) -> None:
    for each in labs:
        plan = each.plan
        print(f"lab {plan.name}: underlay {plan.subnet}, pods {plan.pod_range}, LAN {plan.lan_ns}")
        print(f"  {_store_text(each)}")
        up = upstream.row(plan, each.router())
        if up is not None:
            pids = ", ".join(map(str, up["pids"])) or "-"
            print(
                f"  upstream {up['kind']} in {up['namespace']} {up['ip']} AS {up['asn']}: "
                f"pids {pids} ({'alive' if up['alive'] else 'dead'}), "
                f"{'?' if up['established'] is None else up['established']}/{up['peers']} "
                f"sessions established; external host {up['extNamespace']} {up['extIP']}"
            )
    head = ["NODE", "NAMESPACE", "NODE IP", "POD CIDR", "POD", "POD IP", "ROLE", "KROUTE PID"]
    table = [[*head, "PEERS"]]
    for r in table_rows:
        pid = f"{r['pid']} ({'alive' if r['alive'] else 'dead'})" if r["pid"] else "-"
        est = "?" if r["established"] is None else r["established"]
        peers = f"{est}/{'?' if r['peers'] is None else r['peers']} established"
        keys = ("node", "namespace", "ip", "podCIDR", "pod", "podIP", "role")
        table.append([*(r[key] for key in keys), pid, peers])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_exec(args: argparse.Namespace) -> int:
    """Replace this process with CMD inside the namespace, so stdio and signals are its own."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("no command given; for example `kroute lab exec kr-n1 -- kroute peers`")
    _, node = rows.find_namespace(args.namespace)
    env = dict(os.environ)
    venv_bin = os.path.dirname(sys.executable)  # so `kroute` inside means this kroute
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", os.defpath)])
    if node is not None:
        env["KROUTE_SOCKET"] = node.socket_path
    argv = [*net.nsenter(args.namespace), *command]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        raise LabError(f"cannot run nsenter: {exc.strerror}; install util-linux") from None


def cmd_restart(args: argparse.Namespace) -> int:
    owner = lab.require_lab(args.name) if args.name else _lab_of_node(args.node)
    lab.restart(owner, args.node, args.kill, args.timeout, _say)
    return 0


def cmd_add_node(args: argparse.Namespace) -> int:
    node = nodes.add_node(args.name, args.timeout, _say)
    _say(f"explore: kroute lab exec {node.name} -- kroute nodes")
    _say(f"         kroute lab exec {args.name}-n1-p1 -- ping -c 3 {node.pod_ip}")
    return 0


def cmd_remove_node(args: argparse.Namespace) -> int:
    owner = lab.require_lab(args.name) if args.name else _lab_of_node(args.node)
    nodes.remove_node(owner.plan.name, args.node, args.timeout, _say)
    return 0


def _lab_of_node(node: str) -> lab.Lab:
    for each in lab.all_labs():
        if any(n.name == node for n in each.plan.nodes):
            return each
    return lab.require_lab(DEFAULT_NAME)


Command = Callable[[argparse.Namespace], int]


def _guarded(func: Command) -> Command:
    """Turn LabError and Ctrl-C into an exit code with a one-line message."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except LabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAIL
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `lab` and its subcommands to the `kroute` command line."""
    group = command(
        subparsers,
        "lab",
        "network-namespace demo lab: nodes, pods, kroute in each",
        "kroute lab up && kroute lab status && kroute lab down",
    )
    sub = group.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    def timeout(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--timeout", type=float, default=90.0, help="seconds to wait for the mesh"
        )

    up = command(
        sub,
        "up",
        "build the lab and wait for the BGP full mesh",
        "kroute lab up --nodes 3 --upstream bird",
        "kroute lab up --store etcd",
        "kroute lab up --store etcd --subnets 2 --overlay crossSubnet",
    )
    up.add_argument("--name", default=DEFAULT_NAME, help=f"lab name (default {DEFAULT_NAME})")
    up.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="number of nodes")
    up.add_argument(
        "--upstream",
        choices=UPSTREAM_KINDS,
        help="add an upstream router (AS 65000, NAME-up) and an external host (NAME-ext)",
    )
    up.add_argument(
        "--reflectors",
        type=int,
        default=0,
        metavar="R",
        help="make nodes 1..R iBGP route reflectors; the others peer only with them",
    )
    up.add_argument(
        "--store",
        choices=STORES,
        default="file",
        help="IPAM store: one shared file with a static node list (default), or an etcd "
        "in NAME-etcd that also carries the membership",
    )
    up.add_argument(
        "--datapath",
        choices=DATAPATHS,
        default="bpf",
        help="pod forwarding: kroute's eBPF programs with ip_forward=0 on the nodes "
        "(default), or the kernel's forwarding (legacy)",
    )
    up.add_argument(
        "--subnets",
        type=int,
        choices=SUBNET_COUNTS,
        default=1,
        help="2: odd nodes on 172.31.K.0/25, even ones on 172.31.K.128/25, joined by the "
        "router NAME-rt (no pod routes there; needs --overlay)",
    )
    up.add_argument(
        "--overlay",
        choices=OVERLAYS,
        default="never",
        help="routing.overlay: crossSubnet or always run routing.mode vxlan; never "
        "(default) routes natively",
    )
    timeout(up)
    up.set_defaults(func=_guarded(cmd_up))

    down = command(
        sub, "down", "stop the daemons, remove namespaces and files", "kroute lab down --name kr"
    )
    down.add_argument("--name", default=DEFAULT_NAME, help=f"lab name (default {DEFAULT_NAME})")
    down.set_defaults(func=_guarded(cmd_down))

    status = command(
        sub,
        "status",
        "nodes, daemons and sessions (exit 1 unless all are healthy)",
        "kroute lab status",
        "kroute lab status --name kr -o yaml",
    )
    status.add_argument("--name", help="lab name (default: every lab)")
    add_output_flag(status)
    status.set_defaults(func=_guarded(cmd_status))

    run = command(
        sub,
        "exec",
        "run a command in a lab namespace",
        "kroute lab exec kr-n1-p1 -- ping -c 3 10.200.2.10",
    )
    run.add_argument("namespace", help="a node (kr-n1), pod (kr-n1-p1) or LAN (kr-lan)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    run.set_defaults(func=_guarded(cmd_exec))

    restart = command(
        sub,
        "restart",
        "restart one node's kroute and wait for its peers",
        "kroute lab restart kr-n2",
        "kroute lab restart kr-n2 --kill",
    )
    restart.add_argument("node", help="node name, for example kr-n2")
    restart.add_argument("--name", help="lab name (default: the lab that has NODE)")
    restart.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    timeout(restart)
    restart.set_defaults(func=_guarded(cmd_restart))

    add = command(
        sub,
        "add-node",
        "add a node (with its pod) to a running lab; the others are not restarted",
        "kroute lab add-node --name kr",
    )
    add.add_argument("--name", default=DEFAULT_NAME, help=f"lab name (default {DEFAULT_NAME})")
    timeout(add)
    add.set_defaults(func=_guarded(cmd_add_node))

    remove = command(
        sub,
        "remove-node",
        "stop a node, remove it and release its pod CIDR; the others are not restarted",
        "kroute lab remove-node kr-n4",
    )
    remove.add_argument("node", help="node name, for example kr-n4")
    remove.add_argument("--name", help="lab name (default: the lab that has NODE)")
    timeout(remove)
    remove.set_defaults(func=_guarded(cmd_remove_node))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kroute")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
