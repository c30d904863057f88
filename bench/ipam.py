"""IPAM allocation speed: the file and etcd stores against their write floors, same run.

For each store (`FileIpamStore`, `EtcdIpamStore`), each client count (default 1 and 10) and
each kind of allocation, N allocations in total are split round-robin over C client
processes and timed from the moment every client has been told to go to the moment the last
one finished (time.monotonic() is system-wide, so the clients stamp their own start and
end). Clients are separate processes, spawned once and reused for every case, because the
file store's flock and etcd's compare-and-swap are about processes.

- node block: `allocate_node_blocks` for N new nodes (pool 10.0.0.0/8, one /24 each).
- pod IP: `allocate_pod_ip` for N new containers, all on one node whose /16 block was
  allocated before the clock starts (C clients = C concurrent CNI ADDs on one node).

Every case starts from an empty store (a fresh file; a fresh etcd key prefix). The
baseline of a case runs right after it, on the same clients, with the same N and the same
bytes: cycle k writes as many bytes as the store's document held after allocation k (the
document grows linearly, so sizes are interpolated between the case's first and final
state, both read back from the store).

- file baseline: N raw cycles of flock(LOCK_EX) on a lock file, write a temp file, fsync
  it, rename it over the state file, fsync the directory, unlock. That is the floor any
  crash-safe file store pays; the store adds reading and parsing the document, the pure
  allocator, serialising, and its lock polling (LOCK_NB with 1-5 ms pauses).
- etcd baseline: N plain `put`s of a same-size value to one key through aetcd, the client
  library the store uses: the floor of one round trip per allocation. The store pays a
  `get` and a compare-and-swap `txn` per allocation, plus retries when clients collide.

A real etcd (Debian's etcd-server, `tests/etcd_fixtures.py`) is started on free loopback
ports in a temp dir and stopped by PID at the end; the history is compacted after every
etcd case. File store cases run in a temp dir under $TMPDIR (its file system decides what
fsync costs). At the end the final state of every store case is read back and checked:
no block or pod IP handed out twice, every allocation the clients reported is the stored
one. Timings are printed, never asserted; the exit status is 1 only if that check fails.

Rates depend on N: every allocation reads, checks and rewrites the whole document, so an
allocation costs time linear in the allocations before it and a case's time grows as N^2
(the baselines write the same growing sizes, but bytes alone cost them little). The
default N = 1000 keeps the whole run near one minute; compare runs only at equal N.

    .venv/bin/python bench/ipam.py [--ops 1000] [--clients 1 10] [--stores file etcd]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This file is named ipam.py, and Python puts its directory first on sys.path: put the
# repository root there instead, so `import ipam` finds the package and not this script, and
# its client imports as bench.ipam_client.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import on_sigterm, say
from bench.ipam_client import POD_NODE, POD_POOL, open_store
from ipam.allocator import IpamState
from lab.bench_results import record

REPO = Path(__file__).resolve().parent.parent

MAX_OPS = 65_000
KIND_LABEL = {"node": "node block", "pod": "pod IP"}

_started = time.monotonic()


# -- the parent ---------------------------------------------------------------------------


class Client:
    """One client process, started once; stopped by its PID."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ipam_client"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only the parent, which stops us
        )

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        line = message if isinstance(message, str) else json.dumps(message)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client {self.index} exited (status {self.proc.poll()})")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"client {self.index}: {message['error']}")
        return message

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # EOF: the client leaves its loop
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run_case(clients: list[Client], cases: list[dict[str, Any]]) -> tuple[float, list[Any]]:
    """Give client i `cases[i]`, start them together; wall seconds and per-client results."""
    active = clients[: len(cases)]
    for client, case in zip(active, cases, strict=True):
        client.send(case)
    for client in active:
        client.receive()  # ready
    for client in active:
        client.send("go")
    done = [client.receive() for client in active]
    elapsed = max(d["t1"] for d in done) - min(d["t0"] for d in done)
    return elapsed, [d["results"] for d in done]


async def store_call(backend: str, target: str, prefix: str, what: str) -> IpamState:
    store = open_store(backend, target, prefix)
    try:
        if what == "pod-node":
            await store.allocate_node_blocks(POD_POOL, POD_NODE)
        return await store.snapshot()
    finally:
        await store.close()


async def compact_etcd(endpoint: str) -> None:
    """Drop etcd's history of the case just run (every put keeps a revision)."""
    import aetcd

    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    client = aetcd.Client(host=host, port=int(port))
    try:
        put = await client.put(b"/bench/compact-mark", b"")
        await client.compact(put.header.revision, physical=True)
    finally:
        await client.close()


def check(kind: str, names: list[str], reported: dict[str, str], final: IpamState) -> list[str]:
    """Why `final` (the stored state) is not exactly the allocations the clients reported."""
    problems = final.problems()  # overlapping blocks, one pod IP held twice, ...
    if kind == "node":
        stored = {n: ",".join(str(b) for b in bs) for n, bs in final.node_blocks.items()}
    else:
        pods = final.pod_ips.get(POD_NODE, {})
        stored = {key.split("/")[0]: str(ip) for key, ip in pods.items()}
    if set(stored) != set(names):
        problems.append(f"stored {len(stored)} allocations, expected {len(names)}")
    values = list(stored.values())
    if len(set(values)) != len(values):
        problems.append(f"{len(values) - len(set(values))} allocations are held twice")
    wrong = [n for n in names if reported.get(n) != stored.get(n)]
    if wrong:
        problems.append(f"{len(wrong)} reported allocations differ from the stored ones")
    return problems


@dataclass
class Row:
    store: str
    clients: int
    kind: str
    rate: float
    base_rate: float
    doc_bytes: tuple[int, int]


def measure(
    clients: list[Client],
    *,
    backend: str,
    count: int,
    kind: str,
    ops: int,
    target: str,
    prefix: str,
    base_target: str,
) -> tuple[Row, list[str]]:
    """One case and its baseline; the row and the consistency problems of the store."""
    names = [f"{kind}-{k:05d}" for k in range(ops)]
    start_state = IpamState()
    if kind == "pod":  # the node's block exists before the clock starts
        start_state = asyncio.run(store_call(backend, target, prefix, "pod-node"))
    share = [names[i::count] for i in range(count)]
    common = {"backend": backend, "kind": kind, "prefix": prefix}
    cases = [{**common, "mode": "store", "target": target, "items": s} for s in share]
    elapsed, results = run_case(clients, cases)
    final = asyncio.run(store_call(backend, target, prefix, "read"))
    reported = {
        n: r for s, res in zip(share, results, strict=True) for n, r in zip(s, res, strict=True)
    }
    problems = check(kind, names, reported, final)

    first, last = len(start_state.to_json()), len(final.to_json())
    sizes = [round(first + (last - first) * (k + 1) / ops) for k in range(ops)]
    base = [
        {**common, "mode": "baseline", "target": base_target, "items": [], "sizes": sizes[i::count]}
        for i in range(count)
    ]
    base_elapsed, _ = run_case(clients, base)
    row = Row(backend, count, kind, ops / elapsed, ops / base_elapsed, (first, last))
    return row, problems


@contextlib.contextmanager
def etcd_endpoint(wanted: bool) -> Iterator[str]:
    """A real etcd on loopback (tests/etcd_fixtures.py), or "" when not wanted."""
    if not wanted:
        yield ""
        return
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.etcd_fixtures import etcd_server

    with etcd_server(name="kroute-bench") as server:
        yield server.endpoint


def report(rows: list[Row], ops: int, problems: dict[str, list[str]], seconds: float) -> None:
    print(f"IPAM allocations: {ops} per case, split round-robin over the clients (processes)")
    header = f"{'store':<7}{'clients':>8}  {'kind':<12}{'allocations/s':>15}"
    print(f"{header}{'baseline/s':>13}{'ratio':>8}{'document bytes':>18}")
    for r in rows:
        doc = f"{r.doc_bytes[0]:,}-{r.doc_bytes[1]:,}"
        print(
            f"{r.store:<7}{r.clients:>8}  {KIND_LABEL[r.kind]:<12}{r.rate:>15,.0f}"
            f"{r.base_rate:>13,.0f}{r.rate / r.base_rate:>8.2f}{doc:>18}"
        )
        figure = f"{r.store} store, {r.clients} clients, {KIND_LABEL[r.kind]}"
        floor = "flock+fsync+rename" if r.store == "file" else "plain etcd put"
        record(
            "ipam",
            figure,
            "allocations/s",
            r.rate,
            baseline_name=floor,
            baseline=r.base_rate,
            higher_is_better=True,
        )
    print(
        "ratio = store / baseline (1.0 = as fast as the floor). Baselines, same clients and\n"
        "bytes: file = flock + write temp + fsync + rename + fsync dir per allocation;\n"
        "etcd = one plain aetcd put of the same size per allocation (store: get + CAS txn)."
    )
    bad = {case: p for case, p in problems.items() if p}
    if bad:
        for case, p in bad.items():
            print(f"CONSISTENCY FAILURE in {case}: {'; '.join(p)}")
    else:
        print(
            f"Checked {len(problems)} final states: no node block or pod IP was handed out "
            "twice,\nand every allocation a client reported is the stored one."
        )
    print(f"Run time: {seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1000, help="allocations per case (N)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10], help="client counts")
    parser.add_argument("--stores", nargs="+", choices=("file", "etcd"), default=["file", "etcd"])
    args = parser.parse_args(argv)
    if not 1 <= args.ops <= MAX_OPS:
        parser.error(f"--ops must be 1..{MAX_OPS}")
    if any(not 1 <= c <= args.ops for c in args.clients):
        parser.error("--clients must each be 1..N (--ops)")
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rows: list[Row] = []
    problems: dict[str, list[str]] = {}
    clients: list[Client] = []
    workdir = Path(tempfile.mkdtemp(prefix="kroute-bench-ipam-"))
    try:
        say(f"starting {max(args.clients)} client processes; file cases in {workdir}")
        clients = [Client(i) for i in range(max(args.clients))]
        with etcd_endpoint("etcd" in args.stores) as endpoint:
            if endpoint:
                say(f"etcd at {endpoint}")
            case_no = 0
            for backend in args.stores:
                for count in args.clients:
                    for kind in ("node", "pod"):
                        case_no += 1
                        name = f"{backend}-c{count}-{kind}"
                        if backend == "file":
                            (workdir / name).mkdir()
                            target = str(workdir / name / "ipam.json")
                            base_target = str(workdir / name / "floor.json")
                        else:
                            target = base_target = endpoint
                        row, problems[name] = measure(
                            clients,
                            backend=backend,
                            count=count,
                            kind=kind,
                            ops=args.ops,
                            target=target,
                            prefix=f"/bench/{name}",
                            base_target=base_target,
                        )
                        rows.append(row)
                        say(
                            f"{name}: {row.rate:,.0f}/s, baseline {row.base_rate:,.0f}/s"
                            + (f", PROBLEMS: {problems[name]}" if problems[name] else "")
                        )
                        if backend == "etcd":
                            asyncio.run(compact_etcd(endpoint))
    finally:
        for client in clients:
            client.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(rows, args.ops, problems, time.monotonic() - _started)
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
