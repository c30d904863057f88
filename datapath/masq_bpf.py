"""BPF masquerade (datapath/bpf/masq.h): writes the spec into the pinned masq_* maps,
attaches `to_netdev` on the egress interfaces, reads and sweeps the pinned NAT table.

Used through `datapath.loader.BpfDatapath` (set_masquerade, nat_entries, expire_nat),
which owns the compiled program set, the tc hooks and the map lock. The NAT table lives
on bpffs, so flows survive kroute restarts; the sweep is the daemon's periodic call
(the kernel never ages entries of a plain hash map).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from common.errors import DatapathError
from datapath.masq import MasqueradeSpec, NatEntry, NatTimeouts, expired, masquerade_line
from datapath.tc_hooks import TcHooks

log = logging.getLogger(__name__)


def u32(addr: ipaddress.IPv4Address) -> int:
    """An IPv4 address as the u32 the program compares (network byte order in memory)."""
    return int(struct.unpack("=I", addr.packed)[0])


def addr(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(struct.pack("=I", value & 0xFFFFFFFF))


class BpfMasquerade:
    """The masq_* maps, the NAT table and the `to_netdev` attachments of one program set."""

    def __init__(
        self,
        bpf: Any,
        tc: TcHooks,
        ifindex: Callable[[str], int],
        ifname: Callable[[int], str],
    ) -> None:
        self._config = bpf[b"masq_config"]
        self._egress = bpf[b"masq_egress"]
        self._sources = bpf[b"masq_sources"]
        self._skip = bpf[b"masq_skip"]
        self._out = bpf[b"nat_out"]
        self._in = bpf[b"nat_in"]
        self._prog_fd: int = bpf.load_func(b"to_netdev", bpf.SCHED_CLS).fd
        self._tc = tc
        self._ifindex = ifindex
        self._ifname = ifname
        self.spec: MasqueradeSpec | None = None

    @property
    def max_entries(self) -> int:
        return int(self._out.max_entries)

    def _sync_lpm(self, table: Any, nets: Iterable[ipaddress.IPv4Network]) -> None:
        want = {(n.prefixlen, u32(n.network_address)) for n in nets}
        for k in list(table.keys()):
            if (k.prefixlen, k.addr) not in want:
                del table[k]
        for plen, a in want:
            key = table.Key()
            key.prefixlen, key.addr = plen, a
            table[key] = table.Leaf(1)

    def enabled(self) -> bool:
        return bool(self._config[self._config.Key(0)].enabled)

    def set(self, spec: MasqueradeSpec) -> None:
        if spec.max_entries != self.max_entries:
            raise DatapathError(
                f"masquerade.maxEntries {spec.max_entries} differs from the loaded NAT table "
                f"({self.max_entries}); make the BpfDatapath with max_nat_entries="
                f"{spec.max_entries} (a restart of kroute)"
            )
        indexes = {name: self._ifindex(name) for name in spec.egress_interfaces}
        old = {int(k.value) for k in self._egress}
        for name, index in indexes.items():
            self._egress[self._egress.Key(index)] = self._egress.Leaf(u32(spec.node_ip))
            self._tc.attach(index, name, "egress", "to_netdev", self._prog_fd)
        self._sync_lpm(self._sources, spec.pod_cidrs)
        self._sync_lpm(self._skip, spec.native_routing_cidrs)
        for index in old - set(indexes.values()):
            self._tc.detach(index, index, ("egress",))
            del self._egress[self._egress.Key(index)]
        cfg = self._config.Leaf()
        cfg.enabled = 1
        cfg.redirect_ifindex = indexes[spec.egress_interfaces[0]]
        cfg.port_min, cfg.port_max = spec.port_range
        self._config[self._config.Key(0)] = cfg
        self.spec = spec
        log.info("bpf masquerade set %s", " ".join(f"{k}={v}" for k, v in spec.as_dict().items()))

    def clear(self) -> bool:
        """Stop translating (entries stay until swept: the flows' next packets pass as
        they are); detach `to_netdev`."""
        was = self.enabled()
        self._config[self._config.Key(0)] = self._config.Leaf()
        for k in list(self._egress.keys()):
            self._tc.detach(int(k.value), int(k.value), ("egress",))
            del self._egress[k]
        self.spec = None
        if was:
            log.info("bpf masquerade cleared")
        return was

    def entries(self) -> list[NatEntry]:
        """Every translated flow, with the newer last-seen of its two directions."""
        out = []
        for k, v in list(self._out.items()):
            back = self._in.Key(v.addr, k.addr_b, v.port, k.port_b, k.proto)
            rev = self._in.get(back)
            seen = max(int(v.last_seen), int(rev.last_seen) if rev else 0)
            closing = bool(v.flags & 1 or (rev is not None and rev.flags & 1))
            out.append(
                NatEntry(
                    int(k.proto),
                    addr(k.addr_a),
                    socket.ntohs(k.port_a),
                    addr(v.addr),
                    socket.ntohs(v.port),
                    addr(k.addr_b),
                    socket.ntohs(k.port_b),
                    seen / 1e9,
                    closing,
                )
            )
        return out

    def _delete(self, e: NatEntry) -> None:
        for table, a, port in (
            (self._out, e.pod_ip, e.pod_port),
            (self._in, e.node_ip, e.nat_port),
        ):
            key = table.Key(
                u32(a), u32(e.remote_ip), socket.htons(port), socket.htons(e.remote_port), e.proto
            )
            with contextlib.suppress(KeyError):
                del table[key]

    def expire(self, now: float | None = None) -> int:
        """Remove entries idle past their timeout at monotonic `now` (default: now)."""
        timeouts = self.spec.timeouts if self.spec else NatTimeouts()
        gone = expired(self.entries(), time.monotonic() if now is None else now, timeouts)
        for e in gone:
            self._delete(e)
        if gone:
            log.info("bpf nat expired entries=%d", len(gone))
        return len(gone)

    def fill(self) -> int:
        return sum(1 for _ in self._out)

    def summary(self) -> str | None:
        """`[eth0] 10.244.1.0/24` from the maps (as `MasqueradeSpec.summary`), None if off:
        right also in a process that did not set the spec."""
        if not self.enabled():
            return None
        names = sorted(self._ifname(int(k.value)) for k in self._egress)
        nets = sorted(ipaddress.IPv4Network((addr(k.addr), k.prefixlen)) for k in self._sources)
        return f"[{','.join(names)}] " + ",".join(map(str, nets))

    def status(self) -> dict[str, Any]:
        return {
            "kind": "bpf",
            "line": masquerade_line("bpf", self.summary()),
            "spec": self.spec.as_dict() if self.spec else None,
            "natEntries": self.fill(),
            "natMaxEntries": self.max_entries,
        }
