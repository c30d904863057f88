"""ExaBGP API command text for advertisements: pure functions, one place for the syntax.

Prefixes with the same attributes share one `announce attributes ... nlri P1 P2 ...`
command (ExaBGP handles those far faster than one command per prefix).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from bgpd.bgp.advertise import Advertisement
from bgpd.config.types import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NLRI_BATCH = 500


def attributes_text(adv: Advertisement) -> str:
    parts = [f"next-hop {adv.next_hop if adv.next_hop is not None else 'self'}"]
    if adv.as_path is not None:
        parts.append(f"as-path [ {' '.join(str(asn) for asn in adv.as_path)} ]")
    if adv.local_pref is not None:
        parts.append(f"local-preference {adv.local_pref}")
    if adv.med is not None:
        parts.append(f"med {adv.med}")
    if adv.communities:
        parts.append(f"community [ {' '.join(adv.communities)} ]")
    if adv.large_communities:
        parts.append(f"large-community [ {' '.join(adv.large_communities)} ]")
    if adv.originator_id is not None:
        parts.append(f"originator-id {adv.originator_id}")
    if adv.cluster_list:
        parts.append(f"cluster-list [ {' '.join(adv.cluster_list)} ]")
    return " ".join(parts)


def _sorted(prefixes: Iterable[Network]) -> list[Network]:
    return sorted(prefixes, key=lambda p: (p.version, p))


def _batched(head: str, prefixes: list[Network]) -> list[str]:
    return [
        f"{head} nlri {' '.join(str(p) for p in prefixes[i : i + NLRI_BATCH])}"
        for i in range(0, len(prefixes), NLRI_BATCH)
    ]


def announce_commands(neighbor: IPAddress, advertisements: Iterable[Advertisement]) -> list[str]:
    """Announce to one neighbor, grouped by identical attributes, batched."""
    groups: dict[str, list[Network]] = {}
    for adv in advertisements:
        groups.setdefault(attributes_text(adv), []).append(adv.prefix)
    commands = []
    for text in sorted(groups):
        head = f"neighbor {neighbor} announce attributes {text}"
        commands += _batched(head, _sorted(groups[text]))
    return commands


def withdraw_commands(neighbor: IPAddress, prefixes: Iterable[Network]) -> list[str]:
    """Withdraw from one neighbor; ExaBGP matches the NLRI, not the attributes."""
    return _batched(f"neighbor {neighbor} withdraw attributes next-hop self", _sorted(prefixes))


def eor_command(neighbor: IPAddress, version: int) -> str:
    return f"neighbor {neighbor} announce eor {'ipv4' if version == 4 else 'ipv6'} unicast"


def teardown_command(neighbor: IPAddress, cease_subcode: int) -> str:
    """Close the session with a NOTIFICATION Cease (RFC 4486 subcodes)."""
    return f"neighbor {neighbor} teardown {cease_subcode}"
