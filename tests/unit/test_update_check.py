"""RFC 7606 checks of raw UPDATE bodies (the cases exabgp lets through, and more)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.bgp.update_check import check_update
from tests import raw_bgp as r

HOP = "192.0.2.1"
NLRI = r.nlri("198.51.100.0/24")


def body(message: bytes) -> bytes:
    return message[19:]


def test_a_valid_update_passes() -> None:
    assert check_update(body(r.update(r.valid_attrs(65001, HOP), NLRI))) is None


def test_withdraw_only_and_end_of_rib_pass() -> None:
    assert check_update(body(r.update(withdrawn=NLRI))) is None
    assert check_update(body(r.update())) is None


def test_unknown_optional_transitive_attribute_passes() -> None:
    unknown = r.attr(r.OPTIONAL | r.TRANSITIVE, 240, b"hello")
    assert check_update(body(r.update(r.valid_attrs(65001, HOP) + unknown, NLRI))) is None


def test_attribute_discard_errors_do_not_withdraw() -> None:
    """RFC 7606 7.6/7.7: a bad ATOMIC_AGGREGATE or AGGREGATOR is discarded, not fatal."""
    atomic = r.attr(r.TRANSITIVE, 6, b"\x01")
    aggregator = r.attr(r.OPTIONAL | r.TRANSITIVE, 7, b"\x01\x02\x03")
    assert check_update(body(r.update(r.valid_attrs(1, HOP) + atomic + aggregator, NLRI))) is None


def test_duplicate_attributes_keep_the_first() -> None:
    attrs = r.valid_attrs(65001, HOP) + r.origin(9)
    assert check_update(body(r.update(attrs, NLRI))) is None


PATH = r.as_path(65001)
NH = r.next_hop(HOP)


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        pytest.param(r.origin() + PATH, "missing mandatory attribute NEXT_HOP", id="no-next-hop"),
        pytest.param(NH + PATH, "missing mandatory attribute ORIGIN", id="no-origin"),
        pytest.param(b"", "missing mandatory attribute ORIGIN, AS_PATH, NEXT_HOP", id="none"),
        pytest.param(r.origin(5) + PATH + NH, "ORIGIN value 5", id="origin-value"),
        pytest.param(
            r.attr(r.TRANSITIVE, r.ORIGIN_T, b"\0\0") + PATH + NH, "length 2, must be 1", id="o2"
        ),
        pytest.param(
            r.attr(r.OPTIONAL | r.TRANSITIVE, r.ORIGIN_T, b"\0") + PATH + NH,
            "well-known but flagged",
            id="origin-optional",
        ),
        pytest.param(
            r.origin() + PATH + r.attr(r.TRANSITIVE, r.NEXT_HOP_T, b"\1\2\3\4\5"),
            "attribute 3 has length 5",
            id="next-hop-5",
        ),
        pytest.param(
            r.valid_attrs(1, HOP) + r.attr(r.OPTIONAL | r.TRANSITIVE, 8, b"\1\2\3"),
            "non-zero multiple of 4",
            id="communities-3",
        ),
        pytest.param(
            r.valid_attrs(1, HOP) + r.attr(r.OPTIONAL, r.MED_T, b"\1\2"),
            "attribute 4 has length 2",
            id="med-2",
        ),
        pytest.param(
            r.valid_attrs(1, HOP) + r.attr(r.TRANSITIVE, r.MED_T, b"\0\0\0\1"),
            "optional non-transitive but flagged",
            id="med-well-known",
        ),
        pytest.param(
            r.valid_attrs(1, HOP) + r.attr(r.TRANSITIVE, 241, b"x"),
            "unrecognized well-known attribute 241",
            id="unknown-well-known",
        ),
        pytest.param(
            r.valid_attrs(1, HOP) + r.attr(r.OPTIONAL | r.TRANSITIVE, 32, b"\0" * 11),
            "multiple of 12",
            id="large-community-11",
        ),
        pytest.param(
            r.valid_attrs(1, HOP) + r.attr(r.OPTIONAL | r.TRANSITIVE | r.EXTENDED, 8, b"\0" * 4),
            None,
            id="extended-length-ok",
        ),
    ],
)
def test_attribute_errors_are_treat_as_withdraw(attrs: bytes, reason: str | None) -> None:
    verdict = check_update(body(r.update(attrs, NLRI)))
    if reason is None:
        assert verdict is None
    else:
        assert verdict is not None and reason in verdict, verdict


def test_lengths_that_overrun_are_reported_not_raised() -> None:
    assert "overruns" in str(check_update(body(r.update(r.valid_attrs(1, HOP), attrs_len=300))))
    truncated = r.valid_attrs(1, HOP) + r.attr(r.TRANSITIVE, r.ORIGIN_T, b"\0", length=9)
    assert "overruns" in str(check_update(body(r.update(truncated, NLRI))))
    assert check_update(b"\x00") == "UPDATE shorter than its length fields"


def test_mp_reach_only_update_needs_origin_and_as_path() -> None:
    mp_reach = r.attr(r.OPTIONAL | r.EXTENDED, 14, b"\x00\x02\x01")
    assert check_update(body(r.update(r.origin() + PATH + mp_reach))) is None
    assert "AS_PATH" in str(check_update(body(r.update(r.origin() + mp_reach))))


@given(st.binary(max_size=200))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert check_update(data) is None or isinstance(check_update(data), str)


@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=20)), max_size=8
    ),
    st.booleans(),
)
def test_never_raises_on_arbitrary_attribute_lists(
    attrs: list[tuple[int, int, bytes]], with_nlri: bool
) -> None:
    encoded = b"".join(r.attr(flags & ~r.EXTENDED, code, value) for flags, code, value in attrs)
    result = check_update(body(r.update(encoded, NLRI if with_nlri else b"")))
    assert result is None or isinstance(result, str)
