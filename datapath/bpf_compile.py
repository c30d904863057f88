"""Compile kroute's tc programs (bpf/forward.c with its local headers spliced in) with bcc,
once per process, pin directory and node address; the pinned maps are checked before bcc
reuses them."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import DatapathError
from datapath.bpf_pins import check_pins, fs_type

BPF_DIR = Path(__file__).with_name("bpf")
SOURCE = BPF_DIR / "forward.c"
SPLICED = ("ttl_expired.h", "masq.h", "icmp_error.h")
"""Headers of forward.c spliced in place of their `#include "NAME"` line: bcc rewrites
map calls (`table.lookup()`) only in the main source, not in included files. In splice
order: a header may include one listed after it."""


def program_text() -> str:
    """forward.c with its spliced headers, as bcc compiles it."""
    text = SOURCE.read_text()
    for name in SPLICED:
        text = text.replace(f'#include "{name}"', (BPF_DIR / name).read_text())
    return text


TIME_EXCEEDED = 11
SYSCTL_DIR = "/proc/sys/net/ipv4"


@dataclass(frozen=True)
class IcmpRateLimit:
    """The kernel's limits on the ICMP errors it sends (net.ipv4.icmp_* sysctls, kernel
    defaults here), which the programs apply to the time exceeded they send in its place."""

    ratelimit_ms: int = 1000  # per sender: one per this interval after a burst of 6
    ratemask: int = 6168  # ICMP types limited at all (bit 11: time exceeded)
    msgs_per_sec: int = 1000  # all senders together ...
    msgs_burst: int = 50  # ... with this burst

    @classmethod
    def from_sysctls(cls, sysctl_dir: str = SYSCTL_DIR) -> IcmpRateLimit:
        """The calling process's network namespace's values (defaults where one is absent)."""
        values: dict[str, int] = {}
        for name in ("ratelimit_ms", "ratemask", "msgs_per_sec", "msgs_burst"):
            path = Path(sysctl_dir, "icmp_" + name.removesuffix("_ms"))
            try:
                values[name] = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return cls(**values)

    def cflags(self) -> list[str]:
        """The TE_* flags of bpf/ttl_expired.h: a type outside the mask is not limited."""
        limited = bool(self.ratemask >> TIME_EXCEEDED & 1)
        peer_ns = max(self.ratelimit_ms, 0) * 1_000_000 if limited else 0
        global_cost = 1_000_000_000 // self.msgs_per_sec if limited and self.msgs_per_sec > 0 else 0
        return [
            f"-DTE_PEER_INTERVAL_NS={peer_ns}ull",
            f"-DTE_GLOBAL_COST_NS={global_cost}ull",
            f"-DTE_GLOBAL_BURST={max(self.msgs_burst, 0)}ull",
        ]


_compile_lock = threading.Lock()
_compiled: dict[tuple[str, int, int, int, int, IcmpRateLimit], Any] = {}


def compile_programs(
    pin_dir: str,
    max_local_pods: int,
    max_remote_routes: int,
    max_nat: int,
    node_ip: int = 0,
    *,
    icmp_limit: IcmpRateLimit | None = None,
) -> Any:
    """The loaded `bcc.BPF` for `pin_dir`: compiled once per process, then shared.
    `node_ip`: the node's IPv4 address in network byte order, as the source of the ICMP
    errors the programs send (0: they leave those packets to the stack), within
    `icmp_limit` (default: the sysctls of the namespace this process runs in, the node's
    for the daemon; without a node IP they are never used, so not read)."""
    limit = icmp_limit or (IcmpRateLimit.from_sysctls() if node_ip else IcmpRateLimit())
    key = (pin_dir, max_local_pods, max_remote_routes, max_nat, node_ip, limit)
    with _compile_lock:
        if key in _compiled:
            return _compiled[key]
        try:
            from bcc import BPF
        except ImportError as exc:
            raise DatapathError(
                f"cannot import bcc ({exc}); install python3-bpfcc and make it importable "
                "in the venv (scripts/setup does)"
            ) from None
        if fs_type(pin_dir) != "bpf":
            raise DatapathError(
                f"pin directory {pin_dir} is not on bpffs; mount it "
                "(`mount -t bpf bpf /sys/fs/bpf`) or choose a directory under it"
            )
        os.makedirs(pin_dir, exist_ok=True)
        check_pins(pin_dir, max_nat)
        cflags = [
            f"-DMAX_NAT_ENTRIES={max_nat}",
            f'-DPIN_DIR="{pin_dir}"',
            f"-DMAX_LOCAL_PODS={max_local_pods}",
            f"-DMAX_REMOTE_ROUTES={max_remote_routes}",
            f"-DNODE_IP={node_ip}u",
            *limit.cflags(),
        ]
        try:
            bpf = BPF(text=program_text().encode(), cflags=cflags)
        except Exception as exc:
            hint = ""
            release = os.uname().release
            if not os.path.exists(f"/lib/modules/{release}/build/include/linux/kconfig.h") and (
                not os.path.exists(f"/lib/modules/{release}/source/include/linux/kconfig.h")
            ):
                hint = (
                    f"; kernel headers are incomplete: link Debian's linux-headers-*-common "
                    f"as /lib/modules/{release}/source (and -amd64 as .../build)"
                )
            raise DatapathError(f"compiling {SOURCE} failed: {exc}{hint}") from None
        _compiled[key] = bpf
        return bpf
