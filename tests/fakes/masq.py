"""In-memory masquerader for unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datapath.masq import MasqueradeSpec, NatEntry, expired, masquerade_line


@dataclass
class FakeMasquerader:
    """In-memory `Masquerader` for the daemon's unit tests: entries are added by hand."""

    kind: str = "bpf"
    spec: MasqueradeSpec | None = None
    entries: list[NatEntry] = field(default_factory=list)

    def set_masquerade(self, spec: MasqueradeSpec) -> None:
        self.spec = spec

    def clear_masquerade(self) -> bool:
        was, self.spec = self.spec is not None, None
        return was

    def expire_nat(self, now: float | None = None) -> int:
        if self.spec is None or now is None:
            return 0
        gone = expired(self.entries, now, self.spec.timeouts)
        self.entries = [e for e in self.entries if e not in gone]
        return len(gone)

    def masquerade_status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "line": masquerade_line(self.kind, self.spec.summary() if self.spec else None),
            "spec": self.spec.as_dict() if self.spec else None,
            "natEntries": len(self.entries),
        }
