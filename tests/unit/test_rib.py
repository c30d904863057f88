"""bgpd.bgp.rib: Adj-RIB-In per peer, graceful-restart staleness, best path and ECMP."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from bgpd.bgp.events import PathAttributes, RoutesUpdate
from bgpd.bgp.rib import Path, Rib, Verdict, best_next_hops, best_paths

PEER_B = IPv4Address("10.0.0.2")
PEER_C = IPv4Address("10.0.0.3")
PEER_D = IPv4Address("10.0.0.4")
P1 = IPv4Network("10.244.2.0/24")
P2 = IPv4Network("10.244.3.0/24")
P3 = IPv4Network("10.244.4.0/24")


def attrs(next_hop: str = "10.0.0.2", **kwargs: object) -> PathAttributes:
    return PathAttributes(next_hop=ip_address(next_hop), **kwargs)  # type: ignore[arg-type]


def announce(peer: IPv4Address, *prefixes: IPv4Network, **kwargs: object) -> RoutesUpdate:
    a = attrs(str(peer), **kwargs)
    return RoutesUpdate(peer=peer, announced=tuple((p, a) for p in prefixes))


def withdraw(peer: IPv4Address, *prefixes: IPv4Network) -> RoutesUpdate:
    return RoutesUpdate(peer=peer, withdrawn=prefixes)


def path(router_id: str, peer: str = "10.0.0.2", **kwargs: object) -> Path:
    return Path(ip_address(peer), router_id, attrs(peer, **kwargs))


# -- apply ---------------------------------------------------------------------------


def test_announce_adds_routes() -> None:
    rib = Rib()
    assert rib.apply(announce(PEER_B, P1, P2)) is True
    assert rib.received_count(PEER_B) == 2
    assert set(rib.paths()) == {P1, P2}
    assert rib.paths()[P1] == [Path(PEER_B, "", attrs("10.0.0.2"), stale=False)]


def test_same_announcement_twice_changes_nothing() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    assert rib.apply(announce(PEER_B, P1)) is False


def test_announce_replaces_attributes() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    assert rib.apply(announce(PEER_B, P1, med=10)) is True
    (only,) = rib.paths()[P1]
    assert only.attributes.med == 10
    assert rib.received_count(PEER_B) == 1


def test_withdraw_removes_route() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2))
    assert rib.apply(withdraw(PEER_B, P1)) is True
    assert set(rib.paths()) == {P2}


def test_withdraw_of_unknown_prefix_changes_nothing() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    assert rib.apply(withdraw(PEER_B, P2)) is False
    assert rib.apply(withdraw(PEER_C, P1)) is False
    assert set(rib.paths()) == {P1}


def test_withdraw_only_affects_the_sending_peer() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    rib.apply(announce(PEER_C, P1))
    rib.apply(withdraw(PEER_B, P1))
    assert [p.peer for p in rib.paths()[P1]] == [PEER_C]


def test_withdraw_and_announce_of_same_prefix_in_one_update_keeps_it() -> None:
    rib = Rib()
    update = RoutesUpdate(peer=PEER_B, announced=((P1, attrs()),), withdrawn=(P1,))
    rib.apply(update)
    assert set(rib.paths()) == {P1}


def only(*allowed: object) -> Verdict:
    """An import verdict that accepts `allowed` and refuses the rest as "test"."""
    return lambda prefix, _attrs: None if prefix in allowed else "test"


def test_verdict_drops_and_remembers_rejected_prefixes() -> None:
    rib = Rib()
    assert rib.apply(announce(PEER_B, P1, P2), only(P1)) is True
    assert set(rib.paths()) == {P1}
    assert rib.rejected() == {P2: [(PEER_B, "test")]}


def test_verdict_removes_previously_accepted_route() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2))
    assert rib.apply(announce(PEER_B, P1, P2), only(P2)) is True
    assert set(rib.paths()) == {P2}


def test_verdict_rejecting_unknown_prefix_changes_nothing() -> None:
    rib = Rib()
    assert rib.apply(announce(PEER_B, P1), only()) is False
    assert rib.paths() == {}


def test_withdraw_forgets_rejection() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1), only())
    rib.apply(RoutesUpdate(peer=PEER_B, withdrawn=(P1,)))
    assert rib.rejected() == {}


def test_rejudge_accepts_what_a_wider_policy_allows_and_drops_what_it_refuses() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2), only(P1))
    assert rib.rejudge(PEER_B, only(P2)) is True
    assert set(rib.paths()) == {P2}
    assert rib.rejected() == {P1: [(PEER_B, "test")]}
    assert rib.rejudge(PEER_B, only(P2)) is False
    assert rib.rejudge(PEER_B, only(P1, P2)) is True
    assert set(rib.paths()) == {P1, P2} and rib.rejected() == {}
    assert rib.rejudge(PEER_C, only()) is False


def test_rejudge_keeps_the_attributes_the_peer_sent() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, med=7), only())
    rib.rejudge(PEER_B, only(P1))
    assert rib.paths()[P1][0].attributes.med == 7


def test_withdrawn_or_restarting_refusals_are_not_brought_back() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2), only())
    rib.apply(withdraw(PEER_B, P1))
    rib.mark_stale(PEER_B)  # what the peer refreshes after its restart counts
    assert rib.rejudge(PEER_B, only(P1, P2)) is False
    assert rib.paths() == {}


def test_router_id_is_reported_in_paths() -> None:
    rib = Rib()
    rib.set_router_id(PEER_B, "10.0.0.2")
    rib.apply(announce(PEER_B, P1))
    assert rib.paths()[P1][0].peer_router_id == "10.0.0.2"


def test_ipv6_prefixes() -> None:
    rib = Rib()
    prefix = ip_network("fd00:244:2::/64")
    update = RoutesUpdate(peer=PEER_B, announced=((prefix, attrs("fd00::2")),))
    assert rib.apply(update)
    assert best_next_hops(rib.paths()) == {prefix: (ip_address("fd00::2"),)}


# -- graceful restart ----------------------------------------------------------------


def test_mark_stale_keeps_routes_marked() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2))
    assert rib.mark_stale(PEER_B) is True
    assert rib.stale_count(PEER_B) == 2
    assert rib.received_count(PEER_B) == 2
    assert all(p.stale for paths in rib.paths().values() for p in paths)


def test_mark_stale_without_routes_reports_nothing() -> None:
    assert Rib().mark_stale(PEER_B) is False


def test_drop_stale_removes_stale_routes() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2))
    rib.mark_stale(PEER_B)
    assert rib.drop_stale(PEER_B) is True
    assert rib.paths() == {}
    assert rib.stale_count(PEER_B) == 0
    assert rib.drop_stale(PEER_B) is False


def test_reannounced_stale_route_is_fresh_and_survives_drop_stale() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2))
    rib.mark_stale(PEER_B)
    # Same attributes as before: still a change, the route stops being stale.
    assert rib.apply(announce(PEER_B, P1)) is True
    assert rib.stale_count(PEER_B) == 1
    assert [p.stale for p in rib.paths()[P1]] == [False]
    assert [p.stale for p in rib.paths()[P2]] == [True]
    assert rib.drop_stale(PEER_B) is True
    assert set(rib.paths()) == {P1}


def test_withdrawn_stale_route_is_gone() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, P2))
    rib.mark_stale(PEER_B)
    rib.apply(withdraw(PEER_B, P2))
    assert rib.stale_count(PEER_B) == 1
    rib.drop_stale(PEER_B)
    assert rib.paths() == {}


def test_drop_stale_of_one_peer_leaves_others() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    rib.apply(announce(PEER_C, P1, P2))
    rib.mark_stale(PEER_B)
    rib.drop_stale(PEER_B)
    assert {p: [x.peer for x in v] for p, v in rib.paths().items()} == {
        P1: [PEER_C],
        P2: [PEER_C],
    }


def test_drop_stale_of_unknown_peer() -> None:
    assert Rib().drop_stale(PEER_B) is False


def test_clear_forgets_a_peer() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    rib.apply(announce(PEER_C, P2))
    assert rib.clear(PEER_B) is True
    assert set(rib.paths()) == {P2}
    assert rib.received_count(PEER_B) == 0
    assert rib.clear(PEER_B) is False
    assert rib.clear(PEER_D) is False


def test_clear_of_stale_peer() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    rib.mark_stale(PEER_B)
    assert rib.clear(PEER_B) is True
    assert rib.stale_count(PEER_B) == 0
    assert rib.paths() == {}


# -- best path -------------------------------------------------------------------------


def test_best_paths_of_nothing() -> None:
    assert best_paths([]) == []


def test_higher_local_pref_wins() -> None:
    low = path("1.1.1.1", local_pref=50)
    default = path("2.2.2.2", peer="10.0.0.3")
    high = path("3.3.3.3", peer="10.0.0.4", local_pref=200)
    assert best_paths([low, default, high]) == [high]
    assert best_paths([low, default]) == [default]  # missing local-pref counts as 100


def test_local_pref_beats_as_path_length() -> None:
    long_high = path("1.1.1.1", local_pref=200, as_path=(1, 2, 3, 4))
    short = path("2.2.2.2", peer="10.0.0.3", as_path=(1,))
    assert best_paths([short, long_high]) == [long_high]


def test_shorter_as_path_wins() -> None:
    short = path("9.9.9.9", as_path=(65001,))
    long = path("1.1.1.1", peer="10.0.0.3", as_path=(65001, 65002))
    assert best_paths([long, short]) == [short]


def test_as_path_beats_origin() -> None:
    short_incomplete = path("1.1.1.1", as_path=(1,), origin="incomplete")
    long_igp = path("2.2.2.2", peer="10.0.0.3", as_path=(1, 2), origin="igp")
    assert best_paths([long_igp, short_incomplete]) == [short_incomplete]


def test_lower_origin_wins() -> None:
    igp = path("9.9.9.9", origin="igp")
    egp = path("1.1.1.1", peer="10.0.0.3", origin="egp")
    incomplete = path("2.2.2.2", peer="10.0.0.4", origin="incomplete")
    assert best_paths([incomplete, egp, igp]) == [igp]
    assert best_paths([incomplete, egp]) == [egp]


def test_origin_beats_med() -> None:
    igp_high_med = path("1.1.1.1", origin="igp", med=1000)
    egp_low_med = path("2.2.2.2", peer="10.0.0.3", origin="egp", med=0)
    assert best_paths([egp_low_med, igp_high_med]) == [igp_high_med]


def test_lower_med_wins_and_missing_med_is_zero() -> None:
    med5 = path("1.1.1.1", med=5)
    med1 = path("2.2.2.2", peer="10.0.0.3", med=1)
    no_med = path("3.3.3.3", peer="10.0.0.4")
    assert best_paths([med5, med1]) == [med1]
    assert best_paths([med5, med1, no_med]) == [no_med]


def test_equal_paths_are_ecmp_sorted_by_router_id() -> None:
    c = path("10.0.0.30", peer="10.0.0.3")
    b = path("10.0.0.4", peer="10.0.0.2")
    d = path("9.0.0.1", peer="10.0.0.4")
    # numeric, not text, order: 9.0.0.1 < 10.0.0.4 < 10.0.0.30
    assert best_paths([c, b, d]) == [d, b, c]


def test_equal_paths_with_same_router_id_sorted_by_peer() -> None:
    late = path("1.1.1.1", peer="10.0.0.9")
    early = path("1.1.1.1", peer="10.0.0.3")
    assert best_paths([late, early]) == [early, late]


def test_stale_paths_still_count() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1))
    rib.mark_stale(PEER_B)
    assert best_next_hops(rib.paths()) == {P1: (PEER_B,)}


# -- best next hops ----------------------------------------------------------------------


def test_best_next_hops_ecmp() -> None:
    rib = Rib()
    rib.set_router_id(PEER_B, "10.0.0.2")
    rib.set_router_id(PEER_C, "10.0.0.3")
    rib.apply(announce(PEER_C, P1))
    rib.apply(announce(PEER_B, P1, P2))
    assert best_next_hops(rib.paths()) == {P1: (PEER_B, PEER_C), P2: (PEER_B,)}


def test_best_next_hops_only_from_best_paths() -> None:
    rib = Rib()
    rib.apply(announce(PEER_B, P1, as_path=(1, 2)))
    rib.apply(announce(PEER_C, P1, as_path=(1,)))
    assert best_next_hops(rib.paths()) == {P1: (PEER_C,)}


def test_best_next_hops_excludes_own_next_hop() -> None:
    own = IPv4Address("10.0.0.1")
    rib = Rib()
    # A route reflected back to us with our own next hop, and a worse one via C.
    rib.apply(RoutesUpdate(peer=PEER_B, announced=((P1, attrs("10.0.0.1")),)))
    rib.apply(announce(PEER_C, P1, as_path=(1, 2, 3)))
    rib.apply(RoutesUpdate(peer=PEER_B, announced=((P2, attrs("10.0.0.1")),)))
    assert best_next_hops(rib.paths(), exclude_next_hops=[own]) == {P1: (PEER_C,)}
    assert best_next_hops(rib.paths())[P1] == (own,)


def test_best_next_hops_deduplicates_next_hops() -> None:
    rib = Rib()
    same = attrs("10.0.0.9")
    rib.apply(RoutesUpdate(peer=PEER_B, announced=((P3, same),)))
    rib.apply(RoutesUpdate(peer=PEER_C, announced=((P3, same),)))
    assert best_next_hops(rib.paths()) == {P3: (IPv4Address("10.0.0.9"),)}


def test_best_next_hops_sorted_numerically() -> None:
    rib = Rib()
    rib.apply(RoutesUpdate(peer=PEER_B, announced=((P1, attrs("10.0.0.10")),)))
    rib.apply(RoutesUpdate(peer=PEER_C, announced=((P1, attrs("10.0.0.9")),)))
    assert best_next_hops(rib.paths()) == {P1: (IPv4Address("10.0.0.9"), IPv4Address("10.0.0.10"))}
