"""A session carries its own address family only: a dual-stack node sends its IPv6
pod CIDR and IPv6 End-of-RIB to no IPv4 peer (real exabgp on both sides). exabgp
answers `done` to such commands and sends nothing; kroute counted the IPv6 pod CIDR
as advertised to the IPv4 peer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.kroute_node import Injector, node_with_injectors, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

EBGP = "10.88.0.2"
POD6 = "fd00:250:1::/64"


def dual_stack(config: dict[str, Any], _: Path) -> None:
    config["cluster"]["nodes"][0]["podCIDRs"].append(POD6)


def test_an_ipv4_session_gets_no_ipv6_routes_and_no_ipv6_end_of_rib() -> None:
    injector = Injector(EBGP, 65099, ())
    peers = [{"address": EBGP, "asn": 65099}]
    with node_with_injectors([injector], peers, edit=dual_stack) as node:
        wait_until(lambda: node.peer(EBGP)["state"] == "established", 30, "the session")
        time.sleep(3)  # the replay and End-of-RIB are acknowledged by now
        status = node.status()
        assert status["speaker"]["commandErrors"] == 0
        assert node.peer(EBGP)["prefixesAdvertised"] == 1  # the IPv4 pod CIDR only
        assert "exabgp-command-failed" not in (node.workdir / "kroute.log").read_text()
