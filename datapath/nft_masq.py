"""The legacy masquerade: kernel forwarding plus an nftables `masquerade` rule, for nodes
without bcc or with `datapath.bpf.enabled: false`. Same spec and interface as the BPF
one (`datapath.masq.Masquerader`), so the daemon picks either.

Rules live in chain `pod_masquerade` (nat, postrouting, srcnat) of table `ip kroute`; apply
flushes and refills that chain in one `nft -f -` transaction (idempotent, atomic), remove
deletes the chain only (the table may hold other kroute chains). TCP/UDP get ports from
the spec's range (`masquerade to :61000-65535`); ICMP echo ids are remapped by conntrack.
Conntrack ages the flows itself, so `expire_nat` has nothing to do. Runs `nft` in the
caller's network namespace (or `nsenter --net=/var/run/netns/NS` with `netns`).
"""

from __future__ import annotations

import json
import logging
import subprocess
from typing import Any

from common.errors import DatapathError
from datapath.masq import MasqueradeSpec, masquerade_line

log = logging.getLogger(__name__)

TABLE = "kroute"
CHAIN = "pod_masquerade"
COMMENT = "kroute masquerade"


def ruleset(spec: MasqueradeSpec) -> str:
    """The `nft -f` script that makes chain `pod_masquerade` hold exactly `spec`'s rules."""
    ifs = ", ".join(json.dumps(i) for i in spec.egress_interfaces)
    srcs = ", ".join(map(str, spec.pod_cidrs))
    skip = ", ".join(map(str, spec.native_routing_cidrs))
    match = f"oifname {{ {ifs} }} ip saddr {{ {srcs} }} ip daddr != {{ {skip} }}"
    low, high = spec.port_range
    comment = f"{COMMENT} {spec.summary()}"  # read back by status, also after a restart
    return "\n".join(
        [
            f"table ip {TABLE} {{}}",
            f"chain ip {TABLE} {CHAIN} {{ type nat hook postrouting priority srcnat; }}",
            f"flush chain ip {TABLE} {CHAIN}",
            f"add rule ip {TABLE} {CHAIN} {match} meta l4proto {{ tcp, udp }} counter "
            f'masquerade to :{low}-{high} comment "{comment}"',
            f'add rule ip {TABLE} {CHAIN} {match} counter masquerade comment "{comment}"',
            "",
        ]
    )


class NftMasquerade:
    """kroute's nftables masquerade chain in one network namespace."""

    kind = "nftables"

    def __init__(self, netns: str | None = None, *, enable_forwarding: bool = True) -> None:
        self.netns = netns
        self.enable_forwarding = enable_forwarding
        self.spec: MasqueradeSpec | None = None

    def _run(self, args: list[str], script: str | None = None) -> str:
        prefix = ["nsenter", f"--net=/var/run/netns/{self.netns}", "--"] if self.netns else []
        try:
            proc = subprocess.run(
                [*prefix, *args], input=script, capture_output=True, text=True, check=False
            )
        except FileNotFoundError as exc:
            raise DatapathError(f"{args[0]} not found ({exc}); install nftables") from None
        if proc.returncode != 0:
            raise DatapathError(f"`{' '.join(args)}` failed: {proc.stderr.strip()}")
        return proc.stdout

    def set_masquerade(self, spec: MasqueradeSpec) -> None:
        self._run(["nft", "-f", "-"], ruleset(spec))
        if self.enable_forwarding:
            self._run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        self.spec = spec
        log.info("nft masquerade set %s", " ".join(f"{k}={v}" for k, v in spec.as_dict().items()))

    def _chain(self) -> list[dict[str, Any]] | None:
        """The JSON rules of kroute's chain, or None when there is no chain."""
        try:
            out = self._run(["nft", "-j", "list", "chain", "ip", TABLE, CHAIN])
        except DatapathError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        items = json.loads(out).get("nftables", [])
        return [i["rule"] for i in items if "rule" in i]

    def clear_masquerade(self) -> bool:
        if self._chain() is None:
            return False
        self._run(["nft", "delete", "chain", "ip", TABLE, CHAIN])
        self.spec = None
        log.info("nft masquerade cleared")
        return True

    def expire_nat(self, now: float | None = None) -> int:
        return 0

    def counters(self) -> dict[str, int]:
        """Packets that opened a masqueraded flow (nat rules see a flow's first packet)."""
        rules = self._chain() or []
        packets = 0
        for rule in rules:
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    packets += int(expr["counter"]["packets"])
        return {"masqueraded_flows": packets}

    def masquerade_status(self) -> dict[str, Any]:
        rules = self._chain()
        comments = [str(r.get("comment", "")) for r in rules or []]
        summary = next((c[len(COMMENT) + 1 :] for c in comments if c.startswith(COMMENT)), None)
        active = bool(rules)
        return {
            "kind": self.kind,
            "line": masquerade_line(self.kind, summary),
            "spec": self.spec.as_dict() if self.spec else None,
            "rules": len(rules or []),
            "counters": self.counters() if active else {},
        }
