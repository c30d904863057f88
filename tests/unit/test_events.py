"""bgpd.bgp.events.parse_line: real ExaBGP 5.0.15 lines give typed events; anything else gives
Malformed or Ignored and never an exception."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpd.bgp.events import (
    Ack,
    EndOfRib,
    Event,
    Ignored,
    Malformed,
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
    REAL_LINES,
    STATE_DOWN_LINE,
    UPDATE_LINE,
    WITHDRAW_LINE,
)

EVENT_TYPES = (Ack, PeerState, PeerOpen, RoutesUpdate, EndOfRib, Notification, Ignored, Malformed)


def with_changes(line: str, change: Any) -> str:
    """The real `line` re-serialised after `change(data)` edited it in place."""
    data = json.loads(line)
    change(data)
    return json.dumps(data)


def update_line(update: dict[str, Any]) -> str:
    def change(data: dict[str, Any]) -> None:
        data["neighbor"]["message"] = {"update": update}

    return with_changes(UPDATE_LINE, change)


def state_line(state: str, reason: str | None = None, peer: object = "10.77.0.2") -> str:
    def change(data: dict[str, Any]) -> None:
        data["neighbor"]["state"] = state
        data["neighbor"]["address"]["peer"] = peer
        if reason is None:
            data["neighbor"].pop("reason", None)
        else:
            data["neighbor"]["reason"] = reason

    return with_changes(STATE_DOWN_LINE, change)


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
    )


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


# -- malformed input -----------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(path: tuple[Any, ...]) -> Any:
    def change(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


ANNOUNCED = ("neighbor", "message", "update", "announce", "ipv4 unicast")
ATTRIBUTE = ("neighbor", "message", "update", "attribute")
OPEN_MSG = ("neighbor", "open")

MALFORMED_EDITS = [
    pytest.param(STATE_DOWN_LINE, _set(("neighbor", "state"), "exploded"), id="unknown-state"),
    pytest.param(STATE_DOWN_LINE, _delete(("neighbor", "state")), id="state-missing"),
    pytest.param(STATE_DOWN_LINE, _delete(("neighbor", "address")), id="address-missing"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor",), "10.77.0.2"), id="neighbor-string"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor",), [1, 2]), id="neighbor-list"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor", "state"), ["up"]), id="state-list"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor", "address", "peer"), "x"), id="peer-not-ip"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor", "address", "peer"), None), id="peer-null"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor", "address", "peer"), 5), id="peer-int"),
    pytest.param(STATE_DOWN_LINE, _set(("neighbor", "address", "peer"), True), id="peer-bool"),
    pytest.param(OPEN_LINE, _delete((*OPEN_MSG, "router_id")), id="open-no-router-id"),
    pytest.param(OPEN_LINE, _set((*OPEN_MSG, "router_id"), "fd00::1"), id="open-v6-router-id"),
    pytest.param(OPEN_LINE, _set((*OPEN_MSG, "asn"), "many"), id="open-asn-text"),
    pytest.param(OPEN_LINE, _set((*OPEN_MSG, "asn"), None), id="open-asn-null"),
    pytest.param(OPEN_LINE, _set((*OPEN_MSG, "asn"), float("inf")), id="open-asn-infinity"),
    pytest.param(OPEN_LINE, _set((*OPEN_MSG, "hold_time"), float("nan")), id="open-hold-nan"),
    pytest.param(OPEN_LINE, _set((*OPEN_MSG, "capabilities"), [1]), id="open-caps-list"),
    pytest.param(
        OPEN_LINE,
        _set((*OPEN_MSG, "capabilities", "64", "time"), "soon"),
        id="open-gr-time-text",
    ),
    pytest.param(OPEN_LINE, _set(OPEN_MSG, "open"), id="open-not-object"),
    pytest.param(UPDATE_LINE, _delete(("neighbor", "message")), id="update-no-message"),
    pytest.param(UPDATE_LINE, _set(("neighbor", "message"), {}), id="update-empty-message"),
    pytest.param(
        UPDATE_LINE, _set((*ANNOUNCED, "10.77.0.1", 0, "nlri"), "10.0.0.1/24"), id="host-bits"
    ),
    pytest.param(
        UPDATE_LINE, _set((*ANNOUNCED, "10.77.0.1", 0, "nlri"), "10.0.0.0/33"), id="bad-length"
    ),
    pytest.param(UPDATE_LINE, _set((*ANNOUNCED, "10.77.0.1", 0, "nlri"), None), id="nlri-null"),
    pytest.param(UPDATE_LINE, _set((*ANNOUNCED, "10.77.0.1", 0), {}), id="nlri-missing"),
    pytest.param(UPDATE_LINE, _set((*ANNOUNCED, "10.77.0.1"), "10.0.0.0/8"), id="nlris-string"),
    pytest.param(UPDATE_LINE, _set(ANNOUNCED, ["10.0.0.0/8"]), id="by-next-hop-list"),
    pytest.param(WITHDRAW_LINE, _set(("neighbor", "message", "update", "withdraw"), []), id="wd"),
    pytest.param(
        WITHDRAW_LINE,
        _set(("neighbor", "message", "update", "withdraw", "ipv4 unicast", 0, "nlri"), "1.2.3.4/8"),
        id="withdraw-host-bits",
    ),
    pytest.param(EOR_LINE, _delete(("neighbor", "message", "eor", "safi")), id="eor-no-safi"),
    pytest.param(EOR_LINE, _set(("neighbor", "message", "eor"), "ipv4"), id="eor-string"),
]


ATTRIBUTE_EDITS = [
    pytest.param(UPDATE_LINE, _set(ANNOUNCED, {"nope": ["10.9.0.0/16"]}), id="next-hop-not-ip"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "origin"), "martian"), id="unknown-origin"),
    pytest.param(UPDATE_LINE, _set(ATTRIBUTE, ["igp"]), id="attribute-list"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "local-preference"), "high"), id="lp-text"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "local-preference"), 1e999), id="lp-infinity"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "med"), [1]), id="med-list"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "med"), float("-inf")), id="med-infinity"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "community"), [[1, 2, 3]]), id="community-3"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "community"), [[1e999, 0]]), id="community-inf"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "community"), 7), id="community-int"),
    pytest.param(UPDATE_LINE, _set((*ATTRIBUTE, "as-path"), [1, 2]), id="as-path-list"),
    pytest.param(
        UPDATE_LINE,
        _set((*ATTRIBUTE, "as-path"), {"x": {"element": "as-sequence", "value": [1]}}),
        id="as-path-key-not-number",
    ),
    pytest.param(
        UPDATE_LINE,
        _set((*ATTRIBUTE, "as-path"), {"0": {"value": [1e999]}}),
        id="as-path-infinity",
    ),
    pytest.param(
        UPDATE_LINE, _set((*ATTRIBUTE, "as-path"), {"0": {"element": "x"}}), id="as-path-no-value"
    ),
]
"""Edits that leave the prefixes readable but the attributes not: treat-as-withdraw."""


@pytest.mark.parametrize(("line", "change"), ATTRIBUTE_EDITS)
def test_unusable_attributes_are_treated_as_withdraw(line: str, change: Any) -> None:
    event = parse_line(with_changes(line, change))
    assert isinstance(event, RoutesUpdate), event
    assert event.announced == ()
    assert event.malformed
    assert event.malformed_reason.startswith("unusable attributes: ")


@pytest.mark.parametrize(("line", "change"), MALFORMED_EDITS)
def test_malformed_edits(line: str, change: Any) -> None:
    edited = with_changes(line, change)
    event = parse_line(edited)
    assert isinstance(event, Malformed), event
    assert event.reason
    assert event.line == edited[:200]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "garbage",
        "done done",
        "{",
        UPDATE_LINE[:-5],
        UPDATE_LINE[: len(UPDATE_LINE) // 2],
        "\x00\xff\xfe\ufffd\udcff",
        "null",
        "42",
        '"state"',
        "true",
        "{'type': 'state'}",
    ],
)
def test_malformed_text(line: str) -> None:
    assert isinstance(parse_line(line), Malformed)


def test_malformed_line_is_truncated() -> None:
    event = parse_line("x" * 10_000)
    assert isinstance(event, Malformed)
    assert len(event.line) <= 200


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    """A line of 100k `[` (or `{"a":` ...) makes json.loads hit the recursion limit."""
    for line in ("[" * 100_000, '{"a":' * 100_000):
        assert isinstance(parse_line(line), Malformed)


def test_infinite_numbers_are_malformed_not_a_crash() -> None:
    """Python's json accepts `Infinity` and 1e999; int() of them raises OverflowError."""
    line = OPEN_LINE.replace('"hold_time": 9', '"hold_time": Infinity')
    assert isinstance(parse_line(line), Malformed)
    line = UPDATE_LINE.replace('"local-preference": 100', '"local-preference": 1e999')
    event = parse_line(line)
    assert isinstance(event, RoutesUpdate) and event.malformed and not event.announced


# -- properties ------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["10.0.0.1", "10.244.1.0/24", "10.0.0.1/24", "fd00::1", "igp", "up", "down", "receive"]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8)
            | st.sampled_from(
                ["type", "neighbor", "address", "peer", "state", "message", "update", "nlri"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)

EVENT_KINDS = ["state", "open", "update", "notification", "keepalive"]


def assert_event(event: Event) -> None:
    assert isinstance(event, EVENT_TYPES)


@given(st.text())
def test_parse_line_never_raises_on_text(text: str) -> None:
    assert_event(parse_line(text))


@given(json_values)
def test_parse_line_never_raises_on_json_values(value: Any) -> None:
    assert_event(parse_line(json.dumps(value)))


@given(
    st.dictionaries(
        st.sampled_from(["address", "state", "open", "message", "direction"]), json_values
    ),
    st.sampled_from(EVENT_KINDS),
)
def test_parse_line_never_raises_on_event_shaped_objects(
    neighbor: dict[str, Any], kind: str
) -> None:
    assert_event(parse_line(json.dumps({"type": kind, "neighbor": neighbor})))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a parsed JSON document (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_real_lines(draw: st.DrawFn) -> str:
    """A real exabgp line with a few parts replaced, deleted, or the text cut short."""
    line = draw(st.sampled_from(REAL_LINES))
    data = json.loads(line)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "replace"]))
        if not path:
            data = draw(json_values)
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    text = json.dumps(data)
    if draw(st.booleans()):
        text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_real_lines())
def test_parse_line_never_raises_on_mutated_real_lines(line: str) -> None:
    assert_event(parse_line(line))


@given(st.sampled_from(REAL_LINES), st.data())
def test_parse_line_never_raises_on_byte_flips(line: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(line) - 1))
    char = data.draw(st.characters())
    assert_event(parse_line(line[:index] + char + line[index + 1 :]))


def test_real_lines_survive_a_deep_copy_round_trip() -> None:
    for line in REAL_LINES:
        data = json.loads(line)
        assert parse_line(json.dumps(copy.deepcopy(data))) == parse_line(line)
