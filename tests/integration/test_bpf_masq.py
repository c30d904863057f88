"""What only the BPF masquerade has: the pinned NAT table (entries, sweep, table full) and
a TCP transfer that survives the loader process being killed and replaced
(tests/masq_fixtures.py; the traffic tests both implementations share are in
test_masq_traffic.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from common.errors import DatapathError
from datapath.masq import NatTimeouts
from tests.bpf_fixtures import EXTERNAL_IP, PYTHON, REPO, Topology, nsenter, topology
from tests.masq_fixtures import (
    TCP_PORT,
    TRANSFER,
    UDP_PORT,
    masq_args,
    peer_server,
    probe,
    spec,
)

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

SHORT = NatTimeouts(tcp=7440, tcp_closing=300, udp=60, icmp=60)


@pytest.fixture
def outside() -> Iterator[Topology]:
    with topology(outside=True) as t:
        assert t.external
        with peer_server(t.external):
            yield t


def show(t: Topology, *args: str, **kw: object) -> dict[str, object]:
    """The agent's view of node a, after setting `spec(**kw)` (and sweeping with args)."""
    masq = json.dumps(spec(t, **kw).as_dict())
    size = str(kw.get("max_entries", 65536))
    return t.agent(t.a, "--max-nat", size, "--masq", masq, "show", *args)


def test_nat_entries_counters_and_sweep(outside: Topology) -> None:
    t = outside
    t.agent(t.a, *masq_args(t, timeouts=SHORT))
    a1 = t.a.pods[0]
    assert probe(a1, "udp", EXTERNAL_IP, UDP_PORT, "40001")["peer"].startswith(t.a.ip)
    assert probe(a1, "tcp", EXTERNAL_IP, TCP_PORT)["peer"].startswith(t.a.ip)
    assert t.ping(a1, EXTERNAL_IP, count=1) == 1

    seen = show(t, timeouts=SHORT)
    nat = seen["nat"]
    assert isinstance(nat, list)
    assert sorted(e["proto"] for e in nat) == ["icmp", "tcp", "udp"], nat
    udp = next(e for e in nat if e["proto"] == "udp")
    assert udp["pod"] == f"{a1.ip}:40001"
    assert udp["remote"] == f"{EXTERNAL_IP}:{UDP_PORT}"
    assert udp["node"].startswith(f"{t.a.ip}:")
    tcp = next(e for e in nat if e["proto"] == "tcp")
    assert tcp["closing"]  # the probe closed its connection
    counters = seen["counters"]
    assert isinstance(counters, dict)
    assert counters["masqueraded"] >= 3 and counters["masq_reverse_translated"] >= 3
    assert counters["masq_redirected"] >= 3
    assert counters["nat_table_full"] == 0 and counters["dropped_csum"] == 0
    assert seen["attached_egress"] == {"eth0": "to_netdev"}

    # Fresh entries stay; 120 s on UDP and ICMP (60 s) are gone, closed TCP (300 s) stays.
    assert show(t, "--expire-in", "0", timeouts=SHORT)["expired"] == 0
    later = show(t, "--expire-in", "120", timeouts=SHORT)
    assert later["expired"] == 2
    assert [e["proto"] for e in later["nat"]] == ["tcp"]  # type: ignore[attr-defined]
    gone = show(t, "--expire-in", "400", timeouts=SHORT)
    assert (gone["expired"], gone["nat"]) == (1, [])
    # A swept flow starts again with a new entry.
    assert probe(a1, "udp", EXTERNAL_IP, UDP_PORT, "40001")["peer"].startswith(t.a.ip)

    # Legacy mode's cleanup (no bcc): every kroute filter goes, ingress and egress.
    from pyroute2 import IPRoute

    from datapath.tc_hooks import TcHooks

    with IPRoute(netns=t.a.ns) as ipr:
        assert sorted(TcHooks(ipr).detach_everywhere()) == ["eth0", "p1", "p2"]
    assert probe(a1, "udp", EXTERNAL_IP, UDP_PORT) == {"error": "TimeoutError"}


def test_full_table_is_counted_and_existing_flows_keep_working(outside: Topology) -> None:
    t = outside
    t.agent(t.a, "--max-nat", "2", *masq_args(t, max_entries=2))
    a1 = t.a.pods[0]
    for sport in ("40001", "40002"):
        assert "peer" in probe(a1, "udp", EXTERNAL_IP, UDP_PORT, sport)
    assert probe(a1, "udp", EXTERNAL_IP, UDP_PORT, "40003") == {"error": "TimeoutError"}
    assert "peer" in probe(a1, "udp", EXTERNAL_IP, UDP_PORT, "40001")  # still translated
    seen = show(t, max_entries=2)
    counters = seen["counters"]
    assert isinstance(counters, dict)
    assert counters["nat_table_full"] >= 1, counters
    assert len(seen["nat"]) == 2  # type: ignore[arg-type]
    # The pinned table keeps its size: another maxEntries is refused, saying what to do.
    from datapath.loader import BpfDatapath

    with pytest.raises(DatapathError, match="set maxEntries to 2"):
        BpfDatapath(t.a.pin_dir, netns=t.a.ns, max_nat_entries=4096)


def test_tcp_transfer_survives_the_loader_being_killed_and_restarted(
    outside: Topology,
) -> None:
    t = outside
    a1 = t.a.pods[0]
    argv = [*nsenter(t.a.ns), PYTHON, "-m", "tests.bpf_fixtures", "agent"]
    argv += ["--pin-dir", t.a.pin_dir, "--hold", *masq_args(t)]
    loader = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert loader.stdout is not None
        assert json.loads(loader.stdout.readline())["attached_egress"] == {"eth0": "to_netdev"}
        client = subprocess.Popen(
            [*nsenter(a1.ns), PYTHON, "-c", TRANSFER, EXTERNAL_IP, str(TCP_PORT), "200"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        ready, peer = client.stdout.readline().split()
        assert ready == "ready" and peer.startswith(f"{t.a.ip}:")
        loader.kill()  # kill -9 mid-transfer: programs and pinned NAT table stay
        loader.wait()
        again = t.agent(t.a, *masq_args(t))  # a new loader reuses the pins, re-attaches
        assert [e["node"] for e in again["nat"] if e["proto"] == "tcp"] == [peer]
        out, _ = client.communicate(timeout=60)
    finally:
        for proc in (loader, client):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert out.split() == [str(200 * 65536), "True"], out
