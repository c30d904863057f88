"""bgpd.bgp.sessions.Sessions: import policy on updates, rejected counters, max-prefix shutdown
(graceful-restart staleness is covered through the daemon in test_daemon.py)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network, ip_network

import pytest

from bgpd.bgp.events import EndOfRib, PathAttributes, PeerOpen, PeerState, RoutesUpdate
from bgpd.bgp.peers import EXTERNAL, MESH, ImportRules, Peer
from bgpd.bgp.policy import NOT_ALLOWED, OWN_POD_CIDR, LocalFacts
from bgpd.bgp.rib import Rib
from bgpd.bgp.sessions import CEASE_MAX_PREFIX, Sessions

ME = IPv4Address("10.0.0.1")
NODE_B = IPv4Address("10.0.0.2")
UPSTREAM = IPv4Address("192.0.2.1")
STRANGER = IPv4Address("10.9.9.9")
OWN = ip_network("10.244.1.0/24")

LOCAL = LocalFacts(
    asn=64512,
    router_id=str(ME),
    cluster_id=None,
    own_cidrs=(OWN,),
    node_addresses=(ME, NODE_B),
    own_address=ME,
)
B = Peer(
    address=NODE_B,
    asn=64512,
    name="node-b",
    type=MESH,
    ebgp=False,
    rr_client=False,
    hold_time=9,
    graceful_restart=True,
    imports=ImportRules((ip_network("10.244.0.0/16"),), False, 0),
)
UP = Peer(
    address=UPSTREAM,
    asn=65000,
    name="upstream",
    type=EXTERNAL,
    ebgp=True,
    rr_client=False,
    hold_time=9,
    graceful_restart=True,
    imports=ImportRules((ip_network("10.96.0.0/12"),), False, 3),
)


@dataclasses.dataclass
class Table:
    sessions: Sessions
    rib: Rib
    changes: list[None]
    teardowns: list[tuple[IPv4Address, int]]


@pytest.fixture
def table() -> Table:
    rib = Rib()
    changes: list[None] = []
    teardowns: list[tuple[IPv4Address, int]] = []
    sessions = Sessions(
        (B, UP),
        rib,
        LOCAL,
        on_change=lambda: changes.append(None),
        teardown=lambda peer, subcode: teardowns.append((peer, subcode)),  # type: ignore[arg-type]
        clock=lambda: 1000.0,
        stale_path_time=360,
    )
    return Table(sessions, rib, changes, teardowns)


def up(table: Table, peer: IPv4Address, restart_time: int | None = None) -> None:
    table.sessions.on_state(PeerState(peer, "connected"))
    forwarding = frozenset({"ipv4 unicast"}) if restart_time is not None else frozenset()
    table.sessions.on_open(PeerOpen(peer, str(peer), 65000, 9, restart_time, forwarding))
    table.sessions.on_state(PeerState(peer, "up"))


def update(
    table: Table,
    peer: IPv4Address,
    *prefixes: str,
    withdrawn: tuple[str, ...] = (),
    **attrs: object,
) -> None:
    path_attrs = PathAttributes(next_hop=attrs.pop("next_hop", peer), **attrs)  # type: ignore[arg-type]
    table.sessions.on_update(
        RoutesUpdate(
            peer,
            announced=tuple((ip_network(p), path_attrs) for p in prefixes),
            withdrawn=tuple(ip_network(p) for p in withdrawn),
        )
    )


def lbs(*last_octets: int) -> list[str]:
    return [f"10.96.0.{i}/32" for i in last_octets]


# -- peer table ---------------------------------------------------------------------------------


def test_rib_knows_which_peers_are_ebgp(table: Table) -> None:
    assert table.rib.peer(UPSTREAM).ebgp is True
    assert table.rib.peer(NODE_B).ebgp is False


def test_state_names_and_since(table: Table) -> None:
    status = table.sessions.peers[NODE_B]
    assert (status.state, status.since) == ("idle", None)
    up(table, NODE_B)
    assert (status.state, status.info, status.since) == ("established", "Established", 1000.0)
    table.sessions.on_state(PeerState(NODE_B, "down", "notification received (6,2)"))
    assert (status.state, status.info) == ("idle", "notification received (6,2)")


def test_events_of_unknown_peers_are_ignored(table: Table) -> None:
    up(table, STRANGER)
    update(table, STRANGER, "10.244.2.0/24")
    table.sessions.on_eor(EndOfRib(STRANGER, "ipv4 unicast"))
    assert STRANGER not in table.sessions.peers
    assert table.rib.paths() == {}
    assert table.changes == []


# -- import policy and rejected counters ------------------------------------------------------


def test_accepted_routes_reach_the_rib_and_count_updates(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, "10.244.2.0/24", "10.244.2.128/25")
    assert table.rib.received_count(NODE_B) == 2
    assert table.sessions.peers[NODE_B].updates == 1
    assert table.sessions.peers[NODE_B].rejected == {}
    assert len(table.changes) == 1


def test_rejected_counters_per_reason(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, "10.244.1.0/24", "10.244.1.0/25")  # own pod CIDR x2
    update(table, NODE_B, "10.96.0.1/32")  # not allowed
    update(table, NODE_B, "127.0.0.0/8")  # martian
    update(table, NODE_B, "10.244.3.0/24", next_hop=ME)  # next hop is us
    update(table, NODE_B, "10.244.4.0/24", originator_id=str(ME))
    update(table, NODE_B, "0.0.0.0/0")
    assert table.sessions.peers[NODE_B].rejected == {
        "own pod CIDR": 2,
        "not in import allow list": 1,
        "martian": 1,
        "next hop is this node": 1,
        "originator is this node": 1,
        "default route not allowed": 1,
    }
    assert table.rib.received_count(NODE_B) == 0
    assert set(table.rib.rejected()) == {
        ip_network(p)
        for p in (
            "10.244.1.0/24",
            "10.244.1.0/25",
            "10.96.0.1/32",
            "127.0.0.0/8",
            "10.244.3.0/24",
            "10.244.4.0/24",
            "0.0.0.0/0",
        )
    }
    assert table.changes == []  # nothing accepted, nothing changed


def test_counters_count_every_refused_announcement(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, "10.96.0.1/32")
    update(table, NODE_B, "10.96.0.1/32")
    assert table.sessions.peers[NODE_B].rejected == {"not in import allow list": 2}
    assert table.rib.rejected() == {
        ip_network("10.96.0.1/32"): [(NODE_B, "not in import allow list")]
    }


def test_as_path_loop_counted_for_ebgp(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, "10.96.0.1/32", as_path=(65000, 64512))
    assert table.sessions.peers[UPSTREAM].rejected == {"AS-path loop": 1}


def test_route_becoming_refused_replaces_the_accepted_one(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, "10.244.2.0/24")
    update(table, NODE_B, "10.244.2.0/24", next_hop=ME)
    assert table.rib.received_count(NODE_B) == 0
    assert len(table.changes) == 2


# -- max-prefix ---------------------------------------------------------------------------------


def test_at_the_limit_is_fine(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3))
    assert table.rib.received_count(UPSTREAM) == 3
    assert table.teardowns == []
    assert table.sessions.peers[UPSTREAM].shutdown == ""


def test_exceeding_max_prefix_shuts_the_session(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3))
    changes_before = len(table.changes)
    update(table, UPSTREAM, *lbs(4))
    status = table.sessions.peers[UPSTREAM]
    assert table.rib.received_count(UPSTREAM) == 0  # every route of the peer gone
    assert table.rib.paths() == {}
    assert table.teardowns == [(UPSTREAM, 1)]
    assert CEASE_MAX_PREFIX == 1  # RFC 4486 3: Maximum Number of Prefixes Reached
    assert status.shutdown
    assert "max-prefix 3" in status.shutdown
    assert status.info == status.shutdown
    assert status.rejected["max-prefix exceeded"] == 1
    assert len(table.changes) == changes_before + 1


def test_exceeding_in_one_update(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3, 4, 5))
    assert table.teardowns == [(UPSTREAM, 1)]
    assert table.rib.received_count(UPSTREAM) == 0


def test_refused_routes_do_not_count_towards_max_prefix(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3), "192.168.0.0/24", "192.168.1.0/24")
    assert table.teardowns == []
    assert table.rib.received_count(UPSTREAM) == 3


def test_no_limit_for_zero(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, *(f"10.244.2.{i}/32" for i in range(50)))
    assert table.rib.received_count(NODE_B) == 50
    assert table.teardowns == []


def test_shut_peer_is_torn_down_again_when_it_comes_up(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3, 4))
    table.sessions.on_state(PeerState(UPSTREAM, "down", "notification sent (6,2)"))
    status = table.sessions.peers[UPSTREAM]
    assert status.info == status.shutdown  # the down reason does not hide why
    up(table, UPSTREAM)
    assert table.teardowns == [(UPSTREAM, 1), (UPSTREAM, 1)]


def test_updates_from_a_shut_peer_are_ignored(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3, 4))
    changes = len(table.changes)
    updates = table.sessions.peers[UPSTREAM].updates
    update(table, UPSTREAM, *lbs(1))
    assert table.rib.received_count(UPSTREAM) == 0
    assert table.sessions.peers[UPSTREAM].updates == updates
    assert len(table.changes) == changes
    assert table.teardowns == [(UPSTREAM, 1)]


async def test_shut_gr_peer_going_down_keeps_nothing_stale(table: Table) -> None:
    """A graceful-restart peer shut for max-prefix does not get its routes kept as stale."""
    up(table, UPSTREAM, restart_time=120)
    update(table, UPSTREAM, *lbs(1, 2, 3, 4))
    table.sessions.on_state(PeerState(UPSTREAM, "down", "closing connection"))
    assert table.rib.stale_count(UPSTREAM) == 0
    assert table.sessions.peers[UPSTREAM].stale_timer is None


def test_max_prefix_is_per_peer(table: Table) -> None:
    up(table, UPSTREAM)
    up(table, NODE_B)
    update(table, NODE_B, "10.244.2.0/24")
    update(table, UPSTREAM, *lbs(1, 2, 3, 4))
    assert table.rib.received_count(NODE_B) == 1
    assert table.sessions.peers[NODE_B].shutdown == ""
    assert table.teardowns == [(UPSTREAM, 1)]


def test_withdrawals_keep_a_peer_under_the_limit(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2, 3))
    update(table, UPSTREAM, *lbs(4), withdrawn=tuple(lbs(1)))
    assert table.teardowns == []
    assert table.rib.received_count(UPSTREAM) == 3


def test_rib_apply_without_verdict_accepts_everything() -> None:
    rib = Rib()
    attrs = PathAttributes(next_hop=ME)
    prefix = IPv4Network("10.244.1.0/24")
    assert rib.apply(RoutesUpdate(NODE_B, announced=((prefix, attrs),)))
    assert rib.received_count(NODE_B) == 1


def test_a_wider_allow_list_takes_routes_already_sent_without_a_refresh(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, "203.0.113.0/24")
    assert table.rib.rejected() == {ip_network("203.0.113.0/24"): [(UPSTREAM, NOT_ALLOWED)]}
    wider = ImportRules((ip_network("10.96.0.0/12"), ip_network("203.0.113.0/24")), False, 3)
    table.changes.clear()
    table.sessions.set_peers((B, dataclasses.replace(UP, imports=wider)))
    assert set(table.rib.paths()) == {ip_network("203.0.113.0/24")} and table.changes
    table.sessions.set_peers((B, UP))
    assert table.rib.paths() == {}
    assert table.sessions.peers[UPSTREAM].rejected == {NOT_ALLOWED: 1}  # UPDATEs, not re-judging


def test_new_local_facts_judge_every_peer_again(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, "10.244.7.0/24")
    assert set(table.rib.paths()) == {ip_network("10.244.7.0/24")}
    table.sessions.local = dataclasses.replace(LOCAL, own_cidrs=(OWN, ip_network("10.244.7.0/24")))
    assert table.rib.paths() == {}
    assert table.rib.rejected() == {ip_network("10.244.7.0/24"): [(NODE_B, OWN_POD_CIDR)]}


def test_rejudging_past_max_prefix_shuts_the_session(table: Table) -> None:
    up(table, UPSTREAM)
    update(table, UPSTREAM, *lbs(1, 2), "203.0.113.0/24", "203.0.113.1/32")
    wider = ImportRules((ip_network("10.96.0.0/12"), ip_network("203.0.113.0/24")), False, 3)
    table.sessions.set_peers((B, dataclasses.replace(UP, imports=wider)))
    assert table.teardowns == [(UPSTREAM, CEASE_MAX_PREFIX)]
    assert table.rib.received_count(UPSTREAM) == 0


def test_a_removed_peer_loses_its_routes_and_its_rib_is_freed(table: Table) -> None:
    up(table, NODE_B)
    update(table, NODE_B, "10.244.2.0/24")
    assert table.rib.received_count(NODE_B) == 1
    table.sessions.set_peers((UP,))
    assert NODE_B not in table.sessions.peers
    assert table.rib.paths() == {}
    assert NODE_B not in table.rib._peers  # nothing of it stays behind (many joins/leaves)
