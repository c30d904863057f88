"""bgpd.bgp.events.parse_line on malformed input: unusable attributes are treated as
withdraw (RFC 7606), broken lines and hostile JSON give Malformed, and properties
(hypothesis) that no text, JSON value or mutated real line makes it raise."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpd.bgp.events import (
    Event,
    Malformed,
    RoutesUpdate,
    parse_line,
)
from tests.unit.conftest import (
    EOR_LINE,
    OPEN_LINE,
    REAL_LINES,
    STATE_DOWN_LINE,
    UPDATE_LINE,
    WITHDRAW_LINE,
)
from tests.unit.event_lines import EVENT_TYPES, with_changes

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
