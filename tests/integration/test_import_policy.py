"""Hostile and misconfigured peers against one real kroute node (real exabgp both sides).

The injectors are exabgp speakers announcing static routes: prefixes outside the allow
list, the default route, AS-path loops, our own pod CIDR, routes reflected back to us,
floods past max-prefix. kroute must refuse and count each, and install only the rest.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kroute_node import NODE_CIDR, NODE_IP, Injector, node_with_injectors, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

EBGP, IBGP = "10.88.0.2", "10.88.0.3"
CEASE_MAX_PREFIX = "Cease (6), subcode Maximum Number of Prefixes Reached (1)"  # as tcpdump says


class Capture:
    """tcpdump's decoding of the BGP packets on the injector's side of the link."""

    def __init__(self, ns: str, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-v", "-i", "kri0", "tcp port 179"],
            stdout=out.open("w"),
            stderr=subprocess.DEVNULL,
        )

    def text(self) -> str:
        return self.out.read_text()


@contextlib.contextmanager
def capture(ns: str) -> Iterator[Capture]:
    with tempfile.TemporaryDirectory(prefix="kroute-capture-") as tmp:
        wire = Capture(ns, Path(tmp) / "tcpdump.txt")
        try:
            time.sleep(0.5)  # tcpdump is listening
            yield wire
        finally:
            wire.proc.terminate()
            wire.proc.wait(10)


CLUSTER_ID = "1.1.1.1"


def test_hostile_routes_are_refused_counted_and_explained() -> None:
    ebgp = Injector(
        EBGP,
        65099,
        (
            f"198.51.100.0/24 next-hop {EBGP}",
            f"203.0.113.0/24 next-hop {EBGP}",
            f"0.0.0.0/0 next-hop {EBGP}",
            f"198.51.100.128/25 next-hop {EBGP} as-path [ 65099 64512 ]",
            f"{NODE_CIDR} next-hop {EBGP}",
            f"10.88.0.0/24 next-hop {EBGP}",
            f"127.0.0.0/8 next-hop {EBGP}",
        ),
    )
    ibgp = Injector(
        IBGP,
        64512,
        (
            f"10.251.1.0/24 next-hop {IBGP}",
            f"10.251.2.0/24 next-hop {IBGP} originator-id {NODE_IP}",
            f"10.251.3.0/24 next-hop {IBGP} cluster-list [ {CLUSTER_ID} ]",
        ),
    )
    peers = [
        {"address": EBGP, "asn": 65099, "import": {"allow": ["198.51.100.0/24"]}},
        {"address": IBGP, "asn": 64512, "import": {"allow": ["10.251.0.0/16"]}},
    ]
    with node_with_injectors([ebgp, ibgp], peers, cluster_id=CLUSTER_ID) as node:
        wait_until(
            lambda: (
                sum(node.peer(EBGP)["prefixesRejected"].values()) >= 6
                and sum(node.peer(IBGP)["prefixesRejected"].values()) >= 2
                and "10.251.1.0/24" in node.kernel()
            ),
            30,
            "both injectors' routes to be judged",
        )
        assert node.peer(EBGP)["prefixesRejected"] == {
            "AS-path loop": 1,
            "covers a node address": 1,
            "default route not allowed": 1,
            "martian": 1,
            "not in import allow list": 1,
            "own pod CIDR": 1,
        }
        assert node.peer(IBGP)["prefixesRejected"] == {
            "cluster-list loop": 1,
            "originator is this node": 1,
        }
        kernel = node.kernel()
        assert f"198.51.100.0/24 via {EBGP}" in kernel
        assert f"10.251.1.0/24 via {IBGP}" in kernel
        for refused in ("203.0.113.0/24", "default", "198.51.100.128/25", "10.251.2.", "127.0.0"):
            assert refused not in kernel
        assert f"blackhole {NODE_CIDR}" in kernel
        routes = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bgpd.cli",
                    "routes",
                    "-o",
                    "json",
                    "--socket",
                    node.socket,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        why = {r["prefix"]: r["notInstalled"] for r in routes}
        assert why["203.0.113.0/24"] == (
            f"filtered by import policy of peer {EBGP}: not in import allow list"
        )
        assert why["198.51.100.0/24"] is None


def test_max_prefix_shuts_the_session_and_keeps_it_down() -> None:
    flood = Injector(
        EBGP, 65099, tuple(f"198.51.100.{i * 16}/28 next-hop {EBGP}" for i in range(5))
    )
    peers = [
        {"address": EBGP, "asn": 65099, "import": {"allow": ["198.51.100.0/24"], "maxPrefix": 3}}
    ]
    with node_with_injectors([flood], peers) as node, capture(node.injector_ns) as wire:
        wait_until(lambda: "max-prefix" in node.peer(EBGP)["info"], 30, "the max-prefix shutdown")
        # RFC 4486 3: the peer is told why, although graceful restart was negotiated
        # (exabgp alone would close silently, and the peer would keep our routes stale).
        wait_until(lambda: CEASE_MAX_PREFIX in wire.text(), 10, "the NOTIFICATION on the wire")
        peer = node.peer(EBGP)
        assert peer["info"] == "max-prefix 3 exceeded; session shut"
        assert peer["prefixesRejected"]["max-prefix exceeded"] >= 1
        for _ in range(10):  # the injector reconnects; kroute keeps it shut
            assert "198.51.100." not in node.kernel()
            assert node.peer(EBGP)["prefixesReceived"] == 0
            time.sleep(0.5)


@pytest.mark.parametrize("right_password", [True, False], ids=["md5-match", "md5-mismatch"])
def test_md5_password_from_file_never_shown(tmp_path: Path, right_password: bool) -> None:
    secret = "s3cr3t-" + tmp_path.name[-6:]
    password_file = tmp_path / "peer.md5"
    password_file.write_text(secret + "\n")
    password_file.chmod(0o600)
    injector = Injector(
        EBGP,
        65099,
        (f"198.51.100.0/24 next-hop {EBGP}",),
        md5=secret if right_password else "wrong-password",
    )
    peers = [
        {
            "address": EBGP,
            "asn": 65099,
            "passwordFile": str(password_file),
            "import": {"allow": ["198.51.100.0/24"]},
        }
    ]
    with node_with_injectors([injector], peers) as node:
        if right_password:
            wait_until(lambda: node.peer(EBGP)["state"] == "established", 30, "MD5 session")
            wait_until(lambda: "198.51.100.0/24" in node.kernel(), 10, "the route")
        else:
            time.sleep(8)
            assert node.peer(EBGP)["state"] != "established"
        shown = json.dumps(node.status())
        shown += (node.workdir / "kroute.log").read_text()
        assert secret not in shown
