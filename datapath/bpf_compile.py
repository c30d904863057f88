"""Compile kroute's tc programs (bpf/forward.c with its local headers spliced in) with bcc,
once per process, pin directory and node address; the pinned maps are checked before bcc
reuses them."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from bgpd.errors import DatapathError
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


_compile_lock = threading.Lock()
_compiled: dict[tuple[str, int, int, int, int], Any] = {}


def compile_programs(
    pin_dir: str, max_local_pods: int, max_remote_routes: int, max_nat: int, node_ip: int = 0
) -> Any:
    """The loaded `bcc.BPF` for `pin_dir`: compiled once per process, then shared.
    `node_ip`: the node's IPv4 address in network byte order, as the source of the ICMP
    errors the programs send (0: they leave those packets to the stack)."""
    key = (pin_dir, max_local_pods, max_remote_routes, max_nat, node_ip)
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
