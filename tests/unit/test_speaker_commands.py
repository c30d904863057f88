"""bgpd.speaker: the exabgp command text for announcing and withdrawing prefixes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_network

import pytest

from bgpd.speaker import NLRI_BATCH, SpeakerInfo, announce_commands, withdraw_commands

ANNOUNCE = "announce attributes next-hop self nlri"
WITHDRAW = "withdraw attributes next-hop self nlri"


def v4(count: int, start: int = 0) -> list[IPv4Network]:
    """`count` distinct /32s in 10.0.0.0/8."""
    return [IPv4Network((0x0A000000 + start + i, 32)) for i in range(count)]


def test_no_prefixes_no_commands() -> None:
    assert announce_commands([]) == []
    assert withdraw_commands([]) == []
    assert announce_commands([], neighbor=IPv4Address("10.0.0.2")) == []


def test_one_prefix() -> None:
    assert announce_commands([ip_network("10.244.1.0/24")]) == [f"{ANNOUNCE} 10.244.1.0/24"]
    assert withdraw_commands([ip_network("10.244.1.0/24")]) == [f"{WITHDRAW} 10.244.1.0/24"]


def test_sorted_numerically() -> None:
    prefixes = [ip_network(p) for p in ("10.244.10.0/24", "10.244.2.0/24", "9.0.0.0/8")]
    assert announce_commands(prefixes) == [f"{ANNOUNCE} 9.0.0.0/8 10.244.2.0/24 10.244.10.0/24"]


def test_one_command_per_family_v4_first() -> None:
    prefixes = [ip_network("fd00:244:2::/64"), ip_network("10.244.1.0/24")]
    assert announce_commands(prefixes) == [
        f"{ANNOUNCE} 10.244.1.0/24",
        f"{ANNOUNCE} fd00:244:2::/64",
    ]


def test_accepts_any_iterable() -> None:
    prefixes = {ip_network("10.244.2.0/24"), ip_network("10.244.1.0/24")}
    assert announce_commands(p for p in prefixes) == [f"{ANNOUNCE} 10.244.1.0/24 10.244.2.0/24"]


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (NLRI_BATCH - 1, [NLRI_BATCH - 1]),
        (NLRI_BATCH, [NLRI_BATCH]),
        (NLRI_BATCH + 1, [NLRI_BATCH, 1]),
        (2 * NLRI_BATCH + 7, [NLRI_BATCH, NLRI_BATCH, 7]),
    ],
)
def test_batches_of_500(count: int, sizes: list[int]) -> None:
    assert NLRI_BATCH == 500
    prefixes = v4(count)
    commands = withdraw_commands(reversed(prefixes))
    assert [len(c.removeprefix(WITHDRAW + " ").split()) for c in commands] == sizes
    assert all(c.startswith(WITHDRAW + " ") for c in commands)
    # every prefix exactly once, in order across the batches
    listed = [p for c in commands for p in c.removeprefix(WITHDRAW + " ").split()]
    assert listed == [str(p) for p in prefixes]


def test_batches_are_per_family() -> None:
    v6 = [ip_network(f"fd00::{i:x}/128") for i in range(3)]
    commands = announce_commands([*v4(NLRI_BATCH + 1), *v6])
    assert len(commands) == 3
    assert commands[1] == f"{ANNOUNCE} 10.0.1.244/32"
    assert commands[2] == f"{ANNOUNCE} fd00::/128 fd00::1/128 fd00::2/128"


def test_neighbor_scoped_form() -> None:
    peer = IPv4Address("10.0.0.2")
    assert announce_commands([ip_network("10.244.1.0/24")], neighbor=peer) == [
        f"neighbor 10.0.0.2 {ANNOUNCE} 10.244.1.0/24"
    ]
    assert withdraw_commands([ip_network("10.244.1.0/24")], neighbor=peer) == [
        f"neighbor 10.0.0.2 {WITHDRAW} 10.244.1.0/24"
    ]


def test_neighbor_scoped_batches_all_carry_the_neighbor() -> None:
    peer = IPv6Address("fd00::2")
    commands = announce_commands(v4(NLRI_BATCH * 2 + 1), neighbor=peer)
    assert len(commands) == 3
    assert all(c.startswith(f"neighbor fd00::2 {ANNOUNCE} ") for c in commands)


def test_commands_are_single_lines() -> None:
    for command in announce_commands(v4(1200)) + withdraw_commands(v4(3)):
        assert "\n" not in command


def test_speaker_info_is_a_frozen_value() -> None:
    info = SpeakerInfo(running=True, pid=1, restarts=0, malformed_lines=0, command_errors=0)
    with pytest.raises(AttributeError):
        info.pid = 2  # type: ignore[misc]
