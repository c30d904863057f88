"""bgpd.bgp.events.parse_line: real ExaBGP 5.0.15 lines give typed events; anything else gives
Malformed or Ignored and never an exception."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest

from bgpd.bgp.events import (
    Ack,
    EndOfRib,
    Ignored,
    Notification,
    PathAttributes,
    PeerOpen,
    PeerState,
    RoutesUpdate,
    parse_line,
)
from tests.unit.conftest import (
    EOR_LINE,
    FULL_ATTRIBUTES_LINE,
    NOTIFICATION_SHUTDOWN_LINE,
    OPEN_LINE,
    STATE_DOWN_LINE,
    UPDATE_LINE,
    WITHDRAW_LINE,
)
from tests.unit.event_lines import state_line, update_line, with_changes

# -- real lines ----------------------------------------------------------------------


def test_state_down() -> None:
    assert parse_line(STATE_DOWN_LINE) == PeerState(
        peer=IPv4Address("10.77.0.2"), state="down", reason="notification sent (4,0)"
    )


@pytest.mark.parametrize("state", ["connected", "up"])
def test_state_without_reason(state: str) -> None:
    assert parse_line(state_line(state)) == PeerState(IPv4Address("10.77.0.2"), state, "")


def test_state_down_closing_connection() -> None:
    event = parse_line(state_line("down", "closing connection"))
    assert event == PeerState(IPv4Address("10.77.0.2"), "down", "closing connection")


def test_open_with_graceful_restart() -> None:
    assert parse_line(OPEN_LINE) == PeerOpen(
        peer=IPv4Address("10.77.0.2"),
        router_id="10.77.0.2",
        asn=64512,
        hold_time=9,
        restart_time=9,
        forwarding=frozenset({"ipv4 unicast"}),
    )


def test_open_forwarding_state_bit_per_family_rfc4724_section_3() -> None:
    """RFC 4724 3: the F bit of each family says whether the peer kept its forwarding
    state. exabgp prints it, under the other flag's name, as "restart"; a family listed
    with no flag did not keep it."""

    def change(data: dict[str, Any]) -> None:
        capability = data["neighbor"]["open"]["capabilities"]["64"]
        capability["address-family-flags"] = {"ipv4/unicast": [], "ipv6/unicast": ["restart"]}

    event = parse_line(with_changes(OPEN_LINE, change))
    assert isinstance(event, PeerOpen)
    assert event.restart_time == 9
    assert event.forwarding == frozenset({"ipv6 unicast"})


def test_open_without_graceful_restart() -> None:
    def change(data: dict[str, Any]) -> None:
        del data["neighbor"]["open"]["capabilities"]["64"]

    event = parse_line(with_changes(OPEN_LINE, change))
    assert isinstance(event, PeerOpen)
    assert event.restart_time is None


def test_open_with_graceful_restart_time_zero() -> None:
    """A GR capability with restart time 0 is still GR (RFC 4724 allows it)."""

    def change(data: dict[str, Any]) -> None:
        data["neighbor"]["open"]["capabilities"]["64"]["time"] = 0

    event = parse_line(with_changes(OPEN_LINE, change))
    assert isinstance(event, PeerOpen)
    assert event.restart_time == 0


def test_open_we_sent_is_ignored() -> None:
    def change(data: dict[str, Any]) -> None:
        data["neighbor"]["direction"] = "send"

    assert parse_line(with_changes(OPEN_LINE, change)) == Ignored(kind="open-send")


def test_update_announce() -> None:
    event = parse_line(UPDATE_LINE)
    attrs = PathAttributes(next_hop=IPv4Address("10.77.0.1"), origin="igp", local_pref=100)
    assert event == RoutesUpdate(
        peer=IPv4Address("10.77.0.1"),
        announced=(
            (IPv4Network("10.244.1.0/24"), attrs),
            (IPv4Network("10.244.8.0/24"), attrs),
        ),
        withdrawn=(),
    )


def test_update_withdraw() -> None:
    assert parse_line(WITHDRAW_LINE) == RoutesUpdate(
        peer=IPv4Address("10.77.0.1"), announced=(), withdrawn=(IPv4Network("10.244.8.0/24"),)
    )


def test_update_all_attributes() -> None:
    event = parse_line(FULL_ATTRIBUTES_LINE)
    assert isinstance(event, RoutesUpdate)
    ((prefix, attrs),) = event.announced
    assert prefix == IPv4Network("10.244.1.0/24")
    assert attrs == PathAttributes(
        next_hop=IPv4Address("10.77.0.1"),
        origin="incomplete",
        as_path=(65000, 65001),
        local_pref=200,
        med=5,
        communities=("65535:0", "64512:7"),
        large_communities=("64512:1:2",),
        originator_id="10.0.0.9",
        cluster_list=("10.0.0.1",),
    )


def test_as_path_segments_in_numeric_order() -> None:
    line = update_line(
        {
            "attribute": {
                "origin": "egp",
                "as-path": {
                    "10": {"element": "as-sequence", "value": [3]},
                    "2": {"element": "as-sequence", "value": [2]},
                    "0": {"element": "as-sequence", "value": [1]},
                },
            },
            "announce": {"ipv4 unicast": {"10.0.0.2": [{"nlri": "10.1.0.0/16"}]}},
        }
    )
    event = parse_line(line)
    assert isinstance(event, RoutesUpdate)
    assert event.announced[0][1].as_path == (1, 2, 3)
    assert event.announced[0][1].origin == "egp"


def test_update_announce_and_withdraw_together_with_several_next_hops() -> None:
    line = update_line(
        {
            "announce": {
                "ipv4 unicast": {
                    "10.0.0.2": [{"nlri": "10.1.0.0/16"}],
                    "10.0.0.3": [{"nlri": "10.2.0.0/16"}],
                }
            },
            "withdraw": {"ipv4 unicast": [{"nlri": "10.3.0.0/16"}]},
        }
    )
    event = parse_line(line)
    assert isinstance(event, RoutesUpdate)
    assert [(str(p), str(a.next_hop)) for p, a in event.announced] == [
        ("10.1.0.0/16", "10.0.0.2"),
        ("10.2.0.0/16", "10.0.0.3"),
    ]
    assert event.announced[0][1].origin == "igp"
    assert event.announced[0][1].local_pref is None
    assert event.withdrawn == (IPv4Network("10.3.0.0/16"),)


def test_ipv6_unicast() -> None:
    line = update_line(
        {
            "announce": {"ipv6 unicast": {"fd00::2": [{"nlri": "fd00:244:2::/64"}]}},
            "withdraw": {"ipv6 unicast": [{"nlri": "fd00:244:3::/64"}]},
        }
    )
    event = parse_line(line)
    assert isinstance(event, RoutesUpdate)
    assert event.announced[0][0] == IPv6Network("fd00:244:2::/64")
    assert event.announced[0][1].next_hop == IPv6Address("fd00::2")
    assert event.withdrawn == (IPv6Network("fd00:244:3::/64"),)


def test_other_families_are_skipped() -> None:
    line = update_line(
        {
            "announce": {"ipv4 flow": {"no-nexthop": [{"flow": "x"}]}},
            "withdraw": {"l2vpn evpn": [{"whatever": 1}]},
        }
    )
    event = parse_line(line)
    assert event == RoutesUpdate(peer=IPv4Address("10.77.0.1"))


def test_end_of_rib() -> None:
    assert parse_line(EOR_LINE) == EndOfRib(peer=IPv4Address("10.77.0.1"), family="ipv4 unicast")


def test_notification_from_peer() -> None:
    def change(data: dict[str, Any]) -> None:
        data["type"] = "notification"
        data["neighbor"]["direction"] = "receive"
        data["neighbor"]["notification"] = {"code": 6, "subcode": 2, "data": ""}
        del data["neighbor"]["state"]

    event = parse_line(with_changes(STATE_DOWN_LINE, change))
    assert event == Notification(IPv4Address("10.77.0.2"), "receive", 6, 2)


def test_exabgp_own_shutdown_notification_is_ignored() -> None:
    event = parse_line(NOTIFICATION_SHUTDOWN_LINE)
    assert isinstance(event, Ignored)


@pytest.mark.parametrize(("line", "ok"), [("done", True), ("error", False), ("  done\n", True)])
def test_acks(line: str, ok: bool) -> None:
    assert parse_line(line) == Ack(ok=ok)


@pytest.mark.parametrize("line", ["[]", '[ { "type": "update" } ]', "[1, 2, 3]"])
def test_json_lists_are_ignored(line: str) -> None:
    assert parse_line(line) == Ignored(kind="list")


@pytest.mark.parametrize("kind", ["keepalive", "refresh", "signal", "fsm", None])
def test_other_types_are_ignored(kind: str | None) -> None:
    event = parse_line(json.dumps({"exabgp": "5.0.0", "type": kind}))
    assert isinstance(event, Ignored)


def test_real_lines_end_with_newline_still_parse() -> None:
    assert parse_line(UPDATE_LINE + "\n") == parse_line(UPDATE_LINE)
