"""RFC 7606 checks of a received UPDATE's raw path attributes.

ExaBGP resets the session for errors that make an UPDATE unparseable (bad NLRI or
attribute-list lengths) and treats some attribute errors as withdraw itself, but it
accepts others: an ORIGIN of the wrong length, an unrecognized well-known attribute,
a COMMUNITIES length that is not a multiple of four. kroute asks exabgp for each
UPDATE's raw body too and runs these checks on it: an UPDATE that fails them is
treated as withdraw (RFC 7606 section 2) for every prefix it announces, counted and
logged, and the session stays up. Attribute errors that RFC 7606 answers with
"attribute discard" (ATOMIC_AGGREGATE, AGGREGATOR) do not touch a route kroute uses
and are let through.
"""

from __future__ import annotations

import struct

OPTIONAL, TRANSITIVE, EXTENDED = 0x80, 0x40, 0x10
ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF = 1, 2, 3, 4, 5
ATOMIC_AGGREGATE, AGGREGATOR, COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST = 6, 7, 8, 9, 10
MP_REACH, MP_UNREACH, LARGE_COMMUNITY = 14, 15, 32

WELL_KNOWN = frozenset({ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF, ATOMIC_AGGREGATE})
OPTIONAL_NON_TRANSITIVE = frozenset({MED, ORIGINATOR_ID, CLUSTER_LIST, MP_REACH, MP_UNREACH})
OPTIONAL_TRANSITIVE = frozenset({AGGREGATOR, COMMUNITIES, LARGE_COMMUNITY})
# Attributes whose errors are "attribute discard" in RFC 7606: never a reason to drop routes.
DISCARDABLE = frozenset({ATOMIC_AGGREGATE, AGGREGATOR})

_FIXED_LENGTH = {ORIGIN: 1, NEXT_HOP: 4, MED: 4, LOCAL_PREF: 4, ORIGINATOR_ID: 4}
_LENGTH_MULTIPLE = {COMMUNITIES: 4, CLUSTER_LIST: 4, LARGE_COMMUNITY: 12}


class _UpdateError(Exception):
    pass


def _attributes(body: bytes) -> tuple[list[tuple[int, int, bytes]], bool]:
    """(flags, type, value) of each attribute, and whether the UPDATE has classic NLRI."""
    if len(body) < 4:
        raise _UpdateError("UPDATE shorter than its length fields")
    (withdrawn_len,) = struct.unpack_from("!H", body, 0)
    offset = 2 + withdrawn_len
    if offset + 2 > len(body):
        raise _UpdateError("withdrawn routes length overruns the UPDATE")
    (attrs_len,) = struct.unpack_from("!H", body, offset)
    start, end = offset + 2, offset + 2 + attrs_len
    if end > len(body):
        raise _UpdateError("path attribute length overruns the UPDATE")
    attrs: list[tuple[int, int, bytes]] = []
    pos = start
    while pos < end:
        if pos + 3 > end:
            raise _UpdateError("truncated attribute header")
        flags, code = body[pos], body[pos + 1]
        if flags & EXTENDED:
            if pos + 4 > end:
                raise _UpdateError("truncated attribute header")
            (size,) = struct.unpack_from("!H", body, pos + 2)
            pos += 4
        else:
            size = body[pos + 2]
            pos += 3
        if pos + size > end:
            raise _UpdateError(f"attribute {code} length {size} overruns the attribute list")
        attrs.append((flags, code, body[pos : pos + size]))
        pos += size
    return attrs, end < len(body)


def _flags_error(flags: int, code: int) -> str | None:
    category = flags & (OPTIONAL | TRANSITIVE)
    if code in WELL_KNOWN and category != TRANSITIVE:
        return f"attribute {code} is well-known but flagged {flags:#04x}"
    if code in OPTIONAL_NON_TRANSITIVE and category != OPTIONAL:
        return f"attribute {code} is optional non-transitive but flagged {flags:#04x}"
    if code in OPTIONAL_TRANSITIVE and category != OPTIONAL | TRANSITIVE:
        return f"attribute {code} is optional transitive but flagged {flags:#04x}"
    return None


def _value_error(code: int, value: bytes) -> str | None:
    size = len(value)
    fixed = _FIXED_LENGTH.get(code)
    if fixed is not None and size != fixed:
        return f"attribute {code} has length {size}, must be {fixed}"
    multiple = _LENGTH_MULTIPLE.get(code)
    if multiple is not None and (size == 0 or size % multiple):
        return f"attribute {code} has length {size}, must be a non-zero multiple of {multiple}"
    if code == ORIGIN and value[0] > 2:
        return f"ORIGIN value {value[0]} is not IGP, EGP or INCOMPLETE"
    return None


def check_update(body: bytes) -> str | None:
    """Why this UPDATE body must be treated as withdraw, or None when it may be used."""
    try:
        attrs, has_nlri = _attributes(body)
    except _UpdateError as exc:
        return str(exc)
    seen: set[int] = set()
    for flags, code, value in attrs:
        if code in seen:
            continue  # RFC 7606 3(g): all but the first occurrence are discarded
        seen.add(code)
        known = code in WELL_KNOWN | OPTIONAL_NON_TRANSITIVE | OPTIONAL_TRANSITIVE
        if not known:
            if not flags & OPTIONAL:
                return f"unrecognized well-known attribute {code}"
            continue
        if code in DISCARDABLE:
            continue
        problem = _flags_error(flags, code) or _value_error(code, value)
        if problem is not None:
            return problem
    if has_nlri:
        mandatory: tuple[tuple[str, int], ...] = (
            ("ORIGIN", ORIGIN),
            ("AS_PATH", AS_PATH),
            ("NEXT_HOP", NEXT_HOP),
        )
    elif MP_REACH in seen:
        mandatory = (("ORIGIN", ORIGIN), ("AS_PATH", AS_PATH))
    else:
        mandatory = ()
    missing = [name for name, code in mandatory if code not in seen]
    if missing:
        return "missing mandatory attribute " + ", ".join(missing)
    return None
