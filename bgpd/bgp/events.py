"""Parse ExaBGP's API output lines into typed events.

ExaBGP writes one line per event: JSON objects (`state`, `open`, `update`,
`notification`, ...), sometimes JSON lists, and plain `done` / `error` acks for our
commands. Anything we cannot make sense of becomes `Malformed` (counted and logged by
the caller), never an exception: a bad line must not take the daemon down.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from bgpd.bgp.update_check import check_update

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ORIGINS = {"igp": 0, "egp": 1, "incomplete": 2}


@dataclass(frozen=True)
class PathAttributes:
    """The attributes of one received path that best-path selection and policy use."""

    next_hop: IPAddress
    origin: str = "igp"
    as_path: tuple[int, ...] = ()
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ack:
    """`done` or `error`: the answer to the oldest command not yet answered."""

    ok: bool


@dataclass(frozen=True)
class PeerState:
    """A neighbor's session changed: `connected`, `up` or `down` (with a reason)."""

    peer: IPAddress
    state: str
    reason: str = ""


@dataclass(frozen=True)
class PeerOpen:
    """The OPEN a neighbor sent us; tells whether it does graceful restart, and for which
    families it kept its forwarding state through a restart (RFC 4724 3, the F bit)."""

    peer: IPAddress
    router_id: str
    asn: int
    hold_time: int
    restart_time: int | None
    forwarding: frozenset[str] = frozenset()
    """Families ("ipv4 unicast", as in EndOfRib) whose Forwarding State bit is set."""


@dataclass(frozen=True)
class RoutesUpdate:
    """Announced and withdrawn prefixes of one UPDATE from one neighbor.

    `malformed` holds the prefixes of an UPDATE whose attributes failed the RFC 7606
    checks: they are treated as withdrawn, and `malformed_reason` says why."""

    peer: IPAddress
    announced: tuple[tuple[Network, PathAttributes], ...] = ()
    withdrawn: tuple[Network, ...] = ()
    malformed: tuple[Network, ...] = ()
    malformed_reason: str = ""


@dataclass(frozen=True)
class EndOfRib:
    peer: IPAddress
    family: str


@dataclass(frozen=True)
class Notification:
    peer: IPAddress
    direction: str
    code: int
    subcode: int


@dataclass(frozen=True)
class Ignored:
    """A well-formed line kroute has no use for (keepalives, our own sent messages)."""

    kind: str


@dataclass(frozen=True)
class Malformed:
    line: str
    reason: str = field(default="")


Event = Ack | PeerState | PeerOpen | RoutesUpdate | EndOfRib | Notification | Ignored | Malformed


class _BadEventError(Exception):
    pass


# What reading a JSON structure that is not what exabgp writes can raise.
_PARSE_ERRORS = (_BadEventError, KeyError, TypeError, ValueError, AttributeError, OverflowError)


def parse_line(line: str) -> Event:
    """One line of ExaBGP output to one event; never raises."""
    text = line.strip()
    if text == "done":
        return Ack(ok=True)
    if text == "error":
        return Ack(ok=False)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return Malformed(line=text[:200], reason="not JSON")
    if isinstance(data, list):
        return Ignored(kind="list")
    if not isinstance(data, dict):
        return Malformed(line=text[:200], reason="not a JSON object")
    try:
        return _parse_object(data)
    except _PARSE_ERRORS as exc:
        return Malformed(line=text[:200], reason=f"{type(exc).__name__}: {exc}"[:200])


def _parse_object(data: dict[str, Any]) -> Event:
    kind = data.get("type")
    if kind not in ("state", "open", "update", "notification"):
        return Ignored(kind=str(kind))
    if "neighbor" not in data and kind == "notification":
        return Ignored(kind="notification-local")  # exabgp's own shutdown notice
    neighbor = data["neighbor"]
    peer = _ip(neighbor["address"]["peer"])
    if kind == "state":
        state = neighbor["state"]
        if state not in ("connected", "up", "down"):
            raise _BadEventError(f"unknown state {state!r}")
        return PeerState(peer=peer, state=state, reason=str(neighbor.get("reason", "")))
    direction = neighbor.get("direction", "receive")
    if kind == "notification":
        note = neighbor["notification"]
        return Notification(
            peer=peer, direction=direction, code=int(note["code"]), subcode=int(note["subcode"])
        )
    if direction != "receive":
        return Ignored(kind=f"{kind}-{direction}")
    if kind == "open":
        return _parse_open(peer, neighbor["open"])
    body = data.get("body")  # the raw UPDATE as "0x<hex>", with `packets; consolidate;`
    raw = bytes.fromhex(_text(body).removeprefix("0x")) if body else b""
    return _parse_update(peer, neighbor["message"], raw)


def _parse_open(peer: IPAddress, message: dict[str, Any]) -> PeerOpen:
    """exabgp 5.0 names the graceful restart flags the wrong way round in its JSON: a
    family's Forwarding State bit (0x80) shows as "restart" in `address-family-flags`,
    the Restart State bit (R) as "forwarding" in `restart-flags`."""
    restart_time = None
    forwarding: set[str] = set()
    for capability in message.get("capabilities", {}).values():
        if isinstance(capability, dict) and capability.get("name") == "graceful restart":
            restart_time = int(capability.get("time", 0))
            flags = capability.get("address-family-flags", {})
            if not isinstance(flags, dict):
                raise _BadEventError("address-family-flags is not an object")
            forwarding = {
                _text(family).replace("/", " ")
                for family, family_flags in flags.items()
                if isinstance(family_flags, list) and "restart" in family_flags
            }
    return PeerOpen(
        peer=peer,
        router_id=str(ipaddress.IPv4Address(_text(message["router_id"]))),
        asn=int(message["asn"]),
        hold_time=int(message["hold_time"]),
        restart_time=restart_time,
        forwarding=frozenset(forwarding),
    )


def _parse_update(peer: IPAddress, message: dict[str, Any], body: bytes) -> RoutesUpdate | EndOfRib:
    """An UPDATE whose attributes fail the raw checks or cannot be read (exabgp passes
    an invalid ORIGIN or a missing NEXT_HOP through) is treated as withdraw."""
    if "eor" in message:
        eor = message["eor"]
        return EndOfRib(peer=peer, family=f"{eor['afi']} {eor['safi']}")
    update = message["update"]
    groups: list[tuple[Any, tuple[Network, ...]]] = []
    for family, by_next_hop in update.get("announce", {}).items():
        if family in ("ipv4 unicast", "ipv6 unicast"):
            groups.extend(
                (hop, tuple(_nlri(n) for n in nlris)) for hop, nlris in by_next_hop.items()
            )
    withdrawn: list[Network] = []
    for family, nlris in update.get("withdraw", {}).items():
        if family in ("ipv4 unicast", "ipv6 unicast"):
            withdrawn.extend(_nlri(n) for n in nlris)
    problem = check_update(body) if body else None
    announced: list[tuple[Network, PathAttributes]] = []
    if problem is None:
        try:
            for next_hop, prefixes in groups:
                attrs = _attributes(_ip(next_hop), update.get("attribute", {}))
                announced.extend((prefix, attrs) for prefix in prefixes)
        except _PARSE_ERRORS as exc:
            problem = f"unusable attributes: {exc}"
    if problem is not None:
        malformed = tuple(prefix for _, prefixes in groups for prefix in prefixes)
        return RoutesUpdate(
            peer=peer,
            withdrawn=tuple(withdrawn),
            malformed=malformed,
            malformed_reason=problem[:200],
        )
    return RoutesUpdate(peer=peer, announced=tuple(announced), withdrawn=tuple(withdrawn))


def _text(value: Any) -> str:
    """JSON strings only: `ip_address(5)` would happily give 0.0.0.5."""
    if not isinstance(value, str):
        raise _BadEventError(f"expected a string, got {type(value).__name__}")
    return value


def _ip(value: Any) -> IPAddress:
    return ipaddress.ip_address(_text(value))


def _nlri(item: Any) -> Network:
    text = item["nlri"] if isinstance(item, dict) else item
    return ipaddress.ip_network(_text(text), strict=True)


def _attributes(next_hop: IPAddress, attrs: dict[str, Any]) -> PathAttributes:
    origin = str(attrs.get("origin", "igp"))
    if origin not in ORIGINS:
        raise _BadEventError(f"unknown origin {origin!r}")
    as_path: list[int] = []
    for _, segment in sorted(attrs.get("as-path", {}).items(), key=lambda kv: int(kv[0])):
        as_path.extend(int(asn) for asn in segment["value"])
    local_pref = attrs.get("local-preference")
    med = attrs.get("med")
    return PathAttributes(
        next_hop=next_hop,
        origin=origin,
        as_path=tuple(as_path),
        local_pref=None if local_pref is None else int(local_pref),
        med=None if med is None else int(med),
        communities=tuple(f"{int(a)}:{int(b)}" for a, b in attrs.get("community", [])),
        large_communities=tuple(
            ":".join(str(int(x)) for x in c) for c in attrs.get("large-community", [])
        ),
        originator_id=attrs.get("originator-id"),
        cluster_list=tuple(str(c) for c in attrs.get("cluster-list", [])),
    )
