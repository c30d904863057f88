"""What LB-IPAM persists: which addresses each service holds, as a versioned JSON
document that is checked when read back (a store may hold anything)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.documents import load_versioned
from lbipam.pools import IPAddress, Service

STATE_VERSION = 1


@dataclass(frozen=True)
class LbState:
    """Service key ("namespace/name") -> its addresses; the only thing to persist."""

    assignments: Mapping[str, tuple[IPAddress, ...]] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {"version": STATE_VERSION, "assignments": self.to_mapping()}
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LbState:
        """Parse and check a document; ValueError says what is wrong with it."""
        return cls.from_mapping(load_versioned(text, STATE_VERSION).get("assignments", {}))

    def to_mapping(self) -> dict[str, list[str]]:
        return {k: [str(ip) for ip in v] for k, v in sorted(self.assignments.items())}

    @classmethod
    def from_mapping(cls, raw: object) -> LbState:
        """The `assignments` object of a document; ValueError says what is wrong."""
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise ValueError("assignments must map service keys to lists of addresses")
        try:
            state = cls(
                {str(k): tuple(ipaddress.ip_address(ip) for ip in v) for k, v in raw.items()}
            )
        except ValueError as e:
            raise ValueError(f"malformed address ({e})") from None
        problems = state.problems()
        if problems:
            raise ValueError("inconsistent: " + "; ".join(problems))
        return state

    def problems(self) -> list[str]:
        """Broken invariants: bad keys, two addresses of one family for one service."""
        out = []
        for key, ips in sorted(self.assignments.items()):
            ns, _, name = key.partition("/")
            try:
                Service(ns, name)
            except ValueError:
                out.append(f"service key {key!r} is not namespace/name")
            versions = [ip.version for ip in ips]
            if len(set(versions)) != len(versions):
                out.append(f"service {key} holds two addresses of one family")
        return out
