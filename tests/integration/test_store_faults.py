"""The cluster store in trouble, with traffic flowing: etcd frozen for a minute (every
lease runs out while it is gone) and the state directory's disk full. Nothing may be
withdrawn or corrupted, status must say what is wrong, and all must recover."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgpd.api.client import call, fetch_status
from common.errors import KrouteError
from lab.plan import NodePlan
from tests.integration.conftest import LabFactory
from tests.kroute_node import Injector, node_with_injectors, wait_until
from tests.traffic import Pinger
from tests.watch import RouteWatcher, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

OUTAGE = 60.0


def _store_error(node: NodePlan) -> str:
    return str(fetch_status(node.socket_path)["ipam"]["storeError"])


@pytest.mark.etcd
@pytest.mark.bpf
def test_etcd_frozen_for_a_minute_withdraws_nothing_and_recovers(make_lab: LabFactory) -> None:
    lab = make_lab(3, store="etcd")
    assert lab.etcd is not None
    n1, n2, _ = lab.plan.nodes
    ping = Pinger(n1.pod_ns, n2.pod_ip)
    watcher = RouteWatcher([n.netns for n in lab.plan.nodes])
    os.kill(lab.etcd.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE / 2)
        for node in lab.plan.nodes:  # status answers, and says what is wrong
            assert "did not answer" in _store_error(node) or "unreachable" in _store_error(node)
        time.sleep(OUTAGE / 2)
    finally:
        os.kill(lab.etcd.pid, signal.SIGCONT)  # every lease (TTL 3 s) has long run out

    def recovered() -> bool:
        return all(
            _store_error(n) == ""
            and fetch_status(n.socket_path)["ipam"]["membersWithoutRecord"] == []
            and {p["state"] for p in fetch_status(n.socket_path)["peers"]} == {"established"}
            for n in lab.plan.nodes
        )

    try:
        wait_for(recovered, 30, "every node to re-register and report a healthy store")
        time.sleep(2)
    finally:
        watcher.stop()
        sent, received = ping.stop()
    assert watcher.deleted == []
    assert received == sent, f"lost {sent - received} of {sent} pings"
    for node in lab.plan.nodes:
        assert len(fetch_status(node.socket_path)["peers"]) == 2


@contextlib.contextmanager
def small_disk(size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` on a fresh directory, unmounted and removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="kroute-disk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
        path.rmdir()


def _fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


EBGP = "10.88.0.2"


def test_a_full_state_disk_refuses_drain_clearly_and_loses_nothing() -> None:
    upstream = Injector(EBGP, 65001, (f"203.0.113.0/24 next-hop {EBGP}",))
    peers = [{"address": EBGP, "asn": 65001, "import": {"allow": ["203.0.113.0/24"]}}]
    with small_disk(256) as state:

        def on_small_disk(config: dict[str, Any], _: Path) -> None:
            config["runDir"] = str(state)

        with node_with_injectors([upstream], peers, edit=on_small_disk) as node:
            wait_until(lambda: "203.0.113.0/24 via" in node.kernel(), 30, "the upstream route")
            kernel_before = node.kernel()
            files_before = {p.name: p.read_bytes() for p in state.glob("*.json")}
            filler = _fill(state)

            with pytest.raises(KrouteError) as refused:
                call(node.socket, "/drain?wait=0", method="POST")
            assert "No space left on device" in str(refused.value)
            assert "free space" in str(refused.value)
            status = node.status()
            assert status["drain"] == "none" and status["peers"][0]["state"] == "established"
            assert node.kernel() == kernel_before
            for name, data in files_before.items():  # nothing half-written
                assert (state / name).read_bytes() == data, name

            filler.unlink()
            call(node.socket, "/drain?wait=0", method="POST")
            wait_until(lambda: node.status()["drain"] == "drained", 10, "drained")
            assert (state / "drain-state").read_text().strip() == "drained"
            call(node.socket, "/undrain", method="POST")
