"""FileIpamStore across real processes: contention, SIGKILL mid-write, damaged files.

No root needed; integration because it runs processes. Workers are tests/ipam_workers.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from common.errors import AllocationError
from ipam.allocator import IpamState
from ipam.file_store import FileIpamStore
from ipam.store import StoreCorruptError, StoreError
from tests.ipam_workers import POOL, SHARED, plan

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "ipam_workers.py"


def start(
    path: Path, index: int, count: int, churn: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker process whose JSON lines go to a file (readable while it runs)."""
    log = path.with_name(f"worker-{index}.log")
    args = [sys.executable, str(WORKER), str(path), str(index), str(count)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([*args, "--churn"] if churn else args, stdout=out, env=env)
    return proc, log


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]  # torn line fails


async def prepared(path: Path) -> FileIpamStore:
    store = FileIpamStore(path)
    await store.allocate_node_blocks(POOL, SHARED)
    return store


async def test_ten_processes_make_1000_allocations_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    store = await prepared(path)
    procs = [start(path, i, 100) for i in range(10)]
    assert [p.wait(timeout=120) for p, _ in procs] == [0] * 10
    logs = [lines(log) for _, log in procs]
    assert sum(len(log) for log in logs) == 1000
    assert [line for log in logs for line in log if "error" in line] == []

    state = await store.snapshot()  # from_json has checked every invariant
    assert state.problems() == []
    pod_ips: list[str] = []
    blocks: list[str] = []
    for i, log in enumerate(logs):
        for line in log:
            op = plan(i, line["k"], churn=False)
            if op[0] == "node":
                blocks += line["result"]
                assert [str(b) for b in state.node_blocks[op[1]]] == line["result"]
            else:
                pod_ips.append(line["result"])
                key = f"{op[2]}/{op[3]}/v{op[4]}"
                assert str(state.pod_ips[op[1]][key]) == line["result"]
    assert len(pod_ips) == 900 and len(set(pod_ips)) == 900
    assert len(blocks) == 200 and len(set(blocks)) == 200
    assert not list(tmp_path.glob("ipam.json.tmp-*"))


def replay(index: int, log: list[dict[str, Any]], extra: int) -> tuple[set[str], set[str]]:
    """Nodes and pod keys (node:key) worker `index` holds after its printed operations
    plus `extra` (0 or 1) more operations that may have committed before the kill."""
    nodes: set[str] = set()
    pods: set[str] = set()
    ks = [line["k"] for line in log if "error" not in line]
    ks += [len(log)] * extra
    for k in ks:
        op = plan(index, k, churn=True)
        if op[0] == "node":
            nodes.add(op[1])
        elif op[0] == "unnode":
            nodes.discard(op[1])
            pods = {p for p in pods if not p.startswith(f"{op[1]}:")}
        elif op[0] == "unpod":
            pods -= {f"{op[1]}:{op[2]}/{op[3]}/v4", f"{op[1]}:{op[2]}/{op[3]}/v6"}
        else:
            pods.add(f"{op[1]}:{op[2]}/{op[3]}/v{op[4]}")
    return nodes, pods


def held_by(state: IpamState, index: int) -> tuple[set[str], set[str]]:
    nodes = {n for n in state.node_blocks if n.startswith(f"w{index}-")}
    pods = {
        f"{n}:{k}" for n, ps in state.pod_ips.items() for k in ps if k.startswith(f"w{index}-c")
    }
    return nodes, pods


async def test_sigkill_mid_way_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    store = await prepared(path)
    rnd = random.Random(7)
    for round_ in range(3):
        indexes = range(round_ * 10, round_ * 10 + 10)
        procs = {i: start(path, i, 10**6, churn=True) for i in indexes}
        deadline = time.monotonic() + 30
        while sum(log.stat().st_size > 200 for _, log in procs.values()) < 5:  # mid-way
            assert time.monotonic() < deadline, "workers made no progress"
            time.sleep(0.02)
        time.sleep(rnd.random() * 0.3)
        for proc, _ in procs.values():
            os.kill(proc.pid, signal.SIGKILL)
        assert [p.wait(timeout=30) for p, _ in procs.values()] == [-signal.SIGKILL] * 10
        logs = {i: lines(log) for i, (_, log) in procs.items()}

        json.loads(path.read_text())  # a whole file, never half of one
        state = await store.snapshot()
        assert state.problems() == []
        for i, log in logs.items():
            # The file holds the printed operations, plus perhaps the one in flight.
            assert held_by(state, i) in (replay(i, log, 0), replay(i, log, 1)), f"worker {i}"
            for line in log:  # keys are never reused: what is there is what was printed
                op = plan(i, line["k"], churn=True)
                if op[0] == "pod" and "error" not in line:
                    held = state.pod_ips.get(op[1], {}).get(f"{op[2]}/{op[3]}/v{op[4]}")
                    assert held is None or str(held) == line["result"]
                elif op[0] == "node" and op[1] in state.node_blocks:
                    assert [str(b) for b in state.node_blocks[op[1]]] == line["result"]

    # The store still works, and cleans up what the killed writers left.
    assert await store.allocate_node_blocks(POOL, "after") != ()
    ip = await store.allocate_pod_ip(POOL, "after", "c1", "eth0")
    assert ip in (await store.snapshot()).node_blocks["after"][0]
    assert not list(tmp_path.glob("ipam.json.tmp-*"))


async def test_crash_before_rename_keeps_old_state_and_stale_temp_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ipam.json"
    store = await prepared(path)
    before = path.read_bytes()
    (tmp_path / "ipam.json.tmp-999999").write_text('{"version": 1, "nodeBl')  # torn write

    def crash(*_: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match=r"ipam.json: writing failed .* previous state"):
        await store.allocate_node_blocks(POOL, "a")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("ipam.json.tmp-*"))
    assert await store.allocate_node_blocks(POOL, "a")


async def test_corrupt_file_is_an_error_never_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    path.write_text('{"version": 1, "nodeBlocks": {"a": ["10.0.0.0/24"], "b": ["10.0.0.0/25"]}}')
    store = FileIpamStore(path)
    with pytest.raises(
        StoreCorruptError, match=r"ipam.json is corrupt: .*overlaps.*does not reset"
    ):
        await store.allocate_node_blocks(POOL, "c")
    with pytest.raises(StoreCorruptError):
        await store.snapshot()
    assert "10.0.0.0/25" in path.read_text()


async def test_missing_file_and_directory_mean_empty_state(tmp_path: Path) -> None:
    store = FileIpamStore(tmp_path / "new" / "dir" / "ipam.json")
    assert await store.snapshot() == IpamState()
    assert len(await store.allocate_node_blocks(POOL, "a")) == 2
    assert (tmp_path / "new" / "dir" / "ipam.json.lock").exists()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.snapshot()


async def test_a_hung_lock_holder_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    store = FileIpamStore(path, lock_timeout=0.2)
    await store.allocate_node_blocks(POOL, "a")
    with open(f"{path}.lock", "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match=r"held by another process .*fuser -v"):
            await store.allocate_node_blocks(POOL, "b")
    assert await store.allocate_node_blocks(POOL, "b")


async def test_exhaustion_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    store = FileIpamStore(path)
    small = type(POOL)((POOL.cidrs[0],), mask_v4=15)
    await store.allocate_node_blocks(small, "a")
    await store.allocate_node_blocks(small, "b")
    before = path.stat().st_mtime_ns, path.read_bytes()
    with pytest.raises(AllocationError, match="exhausted: 2 of 2 blocks"):
        await store.allocate_node_blocks(small, "c")
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
