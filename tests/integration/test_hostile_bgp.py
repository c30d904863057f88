"""A raw BGP speaker sends kroute malformed UPDATEs (RFC 7606) and floods.

kroute's exabgp connects to a listener the test owns in the injector namespace; the
test writes the octets. After each hostile message it announces a fresh sentinel
prefix and waits for it in the kernel: UPDATEs are handled in order, so by then the
hostile one has been handled too, and the kernel shows what it did.
"""

from __future__ import annotations

import pytest

from tests import raw_bgp as r
from tests.kroute_node import wait_until
from tests.raw_bgp_session import ASN, RAW, Session, installed, session

__all__ = ["session"]  # the fixture

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

PATH, HOP = r.as_path(ASN), r.next_hop(RAW)
TREAT_AS_WITHDRAW = {
    "198.18.1.0/24": r.origin() + PATH,  # no NEXT_HOP
    "198.18.2.0/24": r.origin(7) + PATH + HOP,  # ORIGIN value
    "198.18.3.0/24": r.attr(r.TRANSITIVE, r.ORIGIN_T, b"\0\0") + PATH + HOP,  # ORIGIN length
    "198.18.4.0/24": r.attr(r.OPTIONAL | r.TRANSITIVE, r.ORIGIN_T, b"\0") + PATH + HOP,  # flags
    "198.18.5.0/24": r.origin() + r.attr(r.TRANSITIVE, r.AS_PATH_T, b"\2\5\0\0\xff\xfb") + HOP,
    "198.18.6.0/24": r.origin() + PATH + r.attr(r.TRANSITIVE, r.NEXT_HOP_T, b"\1\2\3\4\5"),
    "198.18.7.0/24": r.valid_attrs(ASN, RAW) + r.attr(r.TRANSITIVE, 241, b"x"),  # unknown w-k
    "198.18.8.0/24": r.valid_attrs(ASN, RAW) + r.attr(r.OPTIONAL | r.TRANSITIVE, 8, b"\1\2\3"),
}


def test_attribute_errors_are_treated_as_withdraw_and_the_session_stays(session: Session) -> None:
    session.announce("198.18.0.0/24")
    session.announce("198.18.9.0/24")
    unknown = r.attr(r.OPTIONAL | r.TRANSITIVE, 240, b"opaque")
    session.peer.send(r.update(r.valid_attrs(ASN, RAW) + unknown, r.nlri("198.18.10.0/24")))
    session.handled()
    assert installed(session, "198.18.0.0/24") and installed(session, "198.18.9.0/24")
    assert installed(session, "198.18.10.0/24"), "unknown optional transitive must pass"

    for prefix, attrs in TREAT_AS_WITHDRAW.items():
        session.peer.send(r.update(attrs, r.nlri(prefix)))
    # A malformed UPDATE for a prefix we hold withdraws it (RFC 7606 treat-as-withdraw).
    session.peer.send(r.update(r.origin(9) + PATH + HOP, r.nlri("198.18.9.0/24")))
    session.handled()

    for prefix in [*TREAT_AS_WITHDRAW, "198.18.9.0/24"]:
        assert not installed(session, prefix), f"{prefix} from a malformed UPDATE is installed"
    assert installed(session, "198.18.0.0/24")
    assert not session.peer.closed.is_set() and session.peer.notifications == []
    status = session.node.peer(RAW)
    assert status["state"] == "established"
    assert status["prefixesRejected"]["malformed update"] >= 3, status
    log = (session.node.workdir / "kroute.log").read_text()
    assert "event=update-treat-as-withdraw" in log


@pytest.mark.parametrize(
    ("message", "notification"),
    [
        pytest.param(
            r.update(r.valid_attrs(ASN, RAW), r.nlri("198.18.20.0/24", length=33)),
            (3, 10),
            id="nlri-length-33",
        ),
        pytest.param(
            r.update(r.valid_attrs(ASN, RAW), r.nlri("198.18.21.0/24"), attrs_len=200),
            (3, 1),
            id="attribute-list-overrun",
        ),
        pytest.param(r.message(r.UPDATE, b"\0\0\0\0", marker=b"\0" * 16), None, id="bad-marker"),
        pytest.param(r.message(r.UPDATE, b"\0\0\0\0", length=4000), None, id="bad-length"),
        pytest.param(r.message(9, b""), None, id="unknown-type"),
    ],
)
def test_unparseable_messages_reset_the_session_and_install_nothing(
    session: Session, message: bytes, notification: tuple[int, int] | None
) -> None:
    """RFC 7606 keeps session reset for errors that make the UPDATE unreadable."""
    session.announce("198.18.0.0/24")
    session.handled()
    session.peer.send(message)
    assert session.peer.closed.wait(30), "kroute kept a session that sent garbage"
    if notification is not None:
        assert notification in session.peer.notifications
    assert not installed(session, "198.18.20.0/24") and not installed(session, "198.18.21.0/24")
    wait_until(
        lambda: not installed(session, "198.18.0.0/24"), 20, "routes of the reset session gone"
    )
    session.reconnect()
    session.announce("198.18.0.0/24")
    session.handled()
    assert installed(session, "198.18.0.0/24")


def test_a_flood_of_mixed_updates_is_survived(session: Session) -> None:
    """4,000 UPDATEs back to back, every other one malformed: the good ones arrive."""
    good = [f"198.18.{128 + i // 256}.{i % 256}/32" for i in range(2000)]
    bad = [f"198.18.{160 + i // 256}.{i % 256}/32" for i in range(2000)]
    burst = b"".join(
        r.update(r.valid_attrs(ASN, RAW), r.nlri(g)) + r.update(r.origin(3) + PATH + HOP, r.nlri(b))
        for g, b in zip(good, bad, strict=True)
    )
    session.peer.send(burst)
    session.handled()
    kernel = session.node.kernel()
    assert sum(f"{g.split('/')[0]} via" in kernel for g in good) == len(good)
    assert not any(f"{b.split('/')[0]} via" in kernel for b in bad)
    assert session.node.peer(RAW)["prefixesRejected"]["malformed update"] == len(bad)
    assert not session.peer.closed.is_set()
