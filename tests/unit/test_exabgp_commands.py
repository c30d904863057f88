"""bgpd.bgp.exabgp_commands: the exabgp API text for announcing, withdrawing, End-of-RIB and
teardown (replaces test_speaker_commands.py: command generation moved out of the speaker)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_network

import pytest

from bgpd.bgp.advertise import Advertisement
from bgpd.bgp.exabgp_commands import (
    NLRI_BATCH,
    announce_commands,
    attributes_text,
    eor_command,
    teardown_command,
    withdraw_commands,
)
from bgpd.bgp.speaker import SpeakerInfo
from bgpd.config.types import Network

PEER = IPv4Address("10.0.0.2")
PEER6 = IPv6Address("fd00::2")
ANNOUNCE = "neighbor 10.0.0.2 announce attributes next-hop self nlri"
WITHDRAW = "neighbor 10.0.0.2 withdraw attributes next-hop self nlri"
P1 = ip_network("10.244.1.0/24")


def v4(count: int, start: int = 0) -> list[IPv4Network]:
    """`count` distinct /32s in 10.0.0.0/8."""
    return [IPv4Network((0x0A000000 + start + i, 32)) for i in range(count)]


def plain(*prefixes: Network) -> list[Advertisement]:
    return [Advertisement(p) for p in prefixes]


# -- attributes ---------------------------------------------------------------------------


def test_attributes_default_is_next_hop_self_only() -> None:
    assert attributes_text(Advertisement(P1)) == "next-hop self"


def test_attributes_next_hop_address() -> None:
    assert attributes_text(Advertisement(P1, next_hop=IPv4Address("10.0.0.3"))) == (
        "next-hop 10.0.0.3"
    )
    assert attributes_text(Advertisement(P1, next_hop=IPv6Address("fd00::3"))) == (
        "next-hop fd00::3"
    )


@pytest.mark.parametrize(
    ("advertisement", "text"),
    [
        (Advertisement(P1, as_path=(64512, 64512, 64512)), "as-path [ 64512 64512 64512 ]"),
        (Advertisement(P1, local_pref=0), "local-preference 0"),
        (Advertisement(P1, local_pref=200), "local-preference 200"),
        (Advertisement(P1, med=0), "med 0"),
        (Advertisement(P1, med=4294967295), "med 4294967295"),
        (Advertisement(P1, communities=("65535:0", "64512:7")), "community [ 65535:0 64512:7 ]"),
        (
            Advertisement(P1, large_communities=("64512:1:2",)),
            "large-community [ 64512:1:2 ]",
        ),
        (Advertisement(P1, originator_id="10.0.0.9"), "originator-id 10.0.0.9"),
        (
            Advertisement(P1, cluster_list=("10.0.0.1", "10.0.0.5")),
            "cluster-list [ 10.0.0.1 10.0.0.5 ]",
        ),
    ],
    ids=[
        "as-path",
        "local-pref-zero",
        "local-pref",
        "med-zero",
        "med-max",
        "community",
        "large-community",
        "originator-id",
        "cluster-list",
    ],
)
def test_each_attribute_rendered(advertisement: Advertisement, text: str) -> None:
    assert attributes_text(advertisement) == f"next-hop self {text}"


def test_all_attributes_in_a_fixed_order() -> None:
    adv = Advertisement(
        P1,
        next_hop=IPv4Address("10.0.0.3"),
        as_path=(65000,),
        local_pref=100,
        med=5,
        communities=("64512:7",),
        large_communities=("64512:1:2",),
        originator_id="10.0.0.3",
        cluster_list=("10.0.0.1",),
    )
    assert attributes_text(adv) == (
        "next-hop 10.0.0.3 as-path [ 65000 ] local-preference 100 med 5 "
        "community [ 64512:7 ] large-community [ 64512:1:2 ] originator-id 10.0.0.3 "
        "cluster-list [ 10.0.0.1 ]"
    )


def test_empty_as_path_is_explicit() -> None:
    """An iBGP route reflected on carries its (empty) AS path explicitly."""
    assert attributes_text(Advertisement(P1, as_path=())).split() == [
        "next-hop",
        "self",
        "as-path",
        "[",
        "]",
    ]


def test_unset_attributes_are_left_out() -> None:
    text = attributes_text(Advertisement(P1, local_pref=None, med=None, as_path=None))
    for word in ("as-path", "local-preference", "med", "community", "originator", "cluster"):
        assert word not in text


# -- announce -------------------------------------------------------------------------------


def test_no_advertisements_no_commands() -> None:
    assert announce_commands(PEER, []) == []
    assert withdraw_commands(PEER, []) == []


def test_one_prefix() -> None:
    assert announce_commands(PEER, plain(P1)) == [f"{ANNOUNCE} 10.244.1.0/24"]


def test_sorted_numerically() -> None:
    prefixes = [ip_network(p) for p in ("10.244.10.0/24", "10.244.2.0/24", "9.0.0.0/8")]
    assert announce_commands(PEER, plain(*prefixes)) == [
        f"{ANNOUNCE} 9.0.0.0/8 10.244.2.0/24 10.244.10.0/24"
    ]


def test_v4_before_v6_in_one_group() -> None:
    advs = [Advertisement(ip_network("fd00:244:2::/64")), Advertisement(P1)]
    assert announce_commands(PEER, advs) == [f"{ANNOUNCE} 10.244.1.0/24 fd00:244:2::/64"]


def test_accepts_any_iterable() -> None:
    prefixes = {ip_network("10.244.2.0/24"), ip_network("10.244.1.0/24")}
    assert announce_commands(PEER, (Advertisement(p) for p in prefixes)) == [
        f"{ANNOUNCE} 10.244.1.0/24 10.244.2.0/24"
    ]


def test_grouped_by_identical_attributes() -> None:
    p2, p3, p4 = (ip_network(f"10.244.{i}.0/24") for i in (2, 3, 4))
    advs = [
        Advertisement(p3, communities=("65535:0",)),
        Advertisement(P1),
        Advertisement(p4, communities=("65535:0",)),
        Advertisement(p2, med=10),
    ]
    head = "neighbor 10.0.0.2 announce attributes"
    # groups in a stable order (by attribute text), prefixes sorted inside each
    assert announce_commands(PEER, advs) == [
        f"{head} next-hop self nlri 10.244.1.0/24",
        f"{head} next-hop self community [ 65535:0 ] nlri 10.244.3.0/24 10.244.4.0/24",
        f"{head} next-hop self med 10 nlri 10.244.2.0/24",
    ]


def test_different_next_hops_are_different_groups() -> None:
    advs = [
        Advertisement(P1, next_hop=IPv4Address("10.0.0.3")),
        Advertisement(ip_network("10.244.4.0/24"), next_hop=IPv4Address("10.0.0.4")),
        Advertisement(ip_network("10.244.3.0/24"), next_hop=IPv4Address("10.0.0.3")),
    ]
    head = "neighbor 10.0.0.2 announce attributes"
    assert announce_commands(PEER, advs) == [
        f"{head} next-hop 10.0.0.3 nlri 10.244.1.0/24 10.244.3.0/24",
        f"{head} next-hop 10.0.0.4 nlri 10.244.4.0/24",
    ]


def test_same_input_same_commands_whatever_the_order() -> None:
    advs = [
        Advertisement(ip_network(f"10.244.{i}.0/24"), med=i % 3, communities=("1:1",) * (i % 2))
        for i in range(40)
    ]
    assert announce_commands(PEER, advs) == announce_commands(PEER, reversed(advs))


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (NLRI_BATCH - 1, [NLRI_BATCH - 1]),
        (NLRI_BATCH, [NLRI_BATCH]),
        (NLRI_BATCH + 1, [NLRI_BATCH, 1]),
        (2 * NLRI_BATCH + 7, [NLRI_BATCH, NLRI_BATCH, 7]),
    ],
)
def test_batches_of_nlri_batch(count: int, sizes: list[int]) -> None:
    assert NLRI_BATCH == 500
    prefixes = v4(count)
    for commands, head in (
        (withdraw_commands(PEER, reversed(prefixes)), WITHDRAW),
        (announce_commands(PEER, plain(*reversed(prefixes))), ANNOUNCE),
    ):
        assert all(c.startswith(head + " ") for c in commands)
        assert [len(c.removeprefix(head + " ").split()) for c in commands] == sizes
        # every prefix exactly once, in order across the batches
        listed = [p for c in commands for p in c.removeprefix(head + " ").split()]
        assert listed == [str(p) for p in prefixes]


def test_batches_are_per_attribute_group() -> None:
    marked = [Advertisement(p, med=1) for p in v4(3, start=10_000)]
    commands = announce_commands(PEER, [*plain(*v4(NLRI_BATCH + 1)), *marked])
    assert len(commands) == 3
    assert commands[1] == f"{ANNOUNCE} 10.0.1.244/32"
    assert commands[2] == (
        "neighbor 10.0.0.2 announce attributes next-hop self med 1 "
        "nlri 10.0.39.16/32 10.0.39.17/32 10.0.39.18/32"
    )


def test_ipv6_neighbor_batches_all_carry_the_neighbor() -> None:
    commands = announce_commands(PEER6, plain(*v4(NLRI_BATCH * 2 + 1)))
    assert len(commands) == 3
    assert all(
        c.startswith("neighbor fd00::2 announce attributes next-hop self nlri ") for c in commands
    )


def test_commands_are_single_lines() -> None:
    advs = [Advertisement(p, communities=("1:1", "2:2")) for p in v4(1200)]
    for command in announce_commands(PEER, advs) + withdraw_commands(PEER, v4(3)):
        assert "\n" not in command


# -- withdraw, End-of-RIB, teardown ------------------------------------------------------------


def test_withdraw_one_prefix() -> None:
    assert withdraw_commands(PEER, [P1]) == [f"{WITHDRAW} 10.244.1.0/24"]


def test_withdraw_mixed_families_sorted_v4_first() -> None:
    prefixes = [ip_network("fd00::/64"), ip_network("10.244.2.0/24"), P1]
    assert withdraw_commands(PEER, prefixes) == [
        f"{WITHDRAW} 10.244.1.0/24 10.244.2.0/24 fd00::/64"
    ]


def test_eor() -> None:
    assert eor_command(PEER, 4) == "neighbor 10.0.0.2 announce eor ipv4 unicast"
    assert eor_command(PEER6, 6) == "neighbor fd00::2 announce eor ipv6 unicast"


def test_teardown_with_cease_subcode() -> None:
    assert teardown_command(PEER, 2) == "neighbor 10.0.0.2 teardown 2"
    assert teardown_command(PEER6, 4) == "neighbor fd00::2 teardown 4"


def test_speaker_info_is_a_frozen_value() -> None:
    info = SpeakerInfo(running=True, pid=1, restarts=0, malformed_lines=0, command_errors=0)
    with pytest.raises(AttributeError):
        info.pid = 2  # type: ignore[misc]
