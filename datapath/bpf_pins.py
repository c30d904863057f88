"""kroute's pinned BPF maps on bpffs: where they live, the shape each must have, and the
checks that refuse a stale layout before bcc silently reuses it (bcc's pinned tables open
an existing pin whatever its shape or size)."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil

from common.errors import DatapathError
from datapath.bpf_maps import COUNTER_NAMES

DEFAULT_PIN_DIR = "/sys/fs/bpf/kroute"

# (map type, key size, value size) each pinned map must have; see forward.c and masq.h.
_HASH, _ARRAY, _PERCPU_ARRAY, _LPM_TRIE = 1, 2, 6, 11
MAP_SHAPES: dict[str, tuple[int, int, int]] = {
    "local_pods": (_HASH, 4, 20),
    "remote_routes": (_LPM_TRIE, 8, 8),
    "counters": (_PERCPU_ARRAY, 4, 8),
    "masq_config": (_ARRAY, 4, 16),
    "masq_egress": (_HASH, 4, 4),
    "masq_sources": (_LPM_TRIE, 8, 4),
    "masq_skip": (_LPM_TRIE, 8, 4),
    "nat_out": (_HASH, 16, 16),
    "nat_in": (_HASH, 16, 16),
}

log = logging.getLogger(__name__)


def fs_type(path: str) -> str | None:
    """The filesystem type of the mount holding `path` (from /proc/self/mountinfo)."""
    best, fstype = "", None
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mount_point = left.split()[4]
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, fstype = mount_point, right.split()[0]
    return fstype


def pinned_shape(path: str) -> tuple[int, int, int, int] | None:
    """(type, key size, value size, max entries) of the map pinned at `path`, or None."""
    if not os.path.exists(path):
        return None
    lib = ctypes.CDLL("libbcc.so.0", use_errno=True)
    lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
    fd = lib.bpf_obj_get(path.encode())
    if fd < 0:
        err = ctypes.get_errno()
        raise DatapathError(
            f"bpffs pin {path} exists but cannot be opened ({os.strerror(err)}); "
            "remove it if it is not a map kroute pinned"
        )
    try:
        info: dict[str, int] = {}
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("map_type", "key_size", "value_size", "max_entries"):
                    info[key] = int(value.strip())
    finally:
        os.close(fd)
    if "map_type" not in info:
        raise DatapathError(f"bpffs pin {path} is not a map; remove it")
    return info["map_type"], info["key_size"], info["value_size"], info["max_entries"]


def check_pins(pin_dir: str, max_nat_entries: int) -> None:
    """Refuse pinned maps of another shape than this kroute's (a stale kroute's layout),
    and a NAT table of another size than asked for (bcc would reuse it as it is)."""
    for name, shape in MAP_SHAPES.items():
        path = os.path.join(pin_dir, name)
        found = pinned_shape(path)
        if found is None:
            continue
        if name == "counters" and found[:3] == shape and found[3] != len(COUNTER_NAMES):
            # Another kroute's set of counters: they are statistics, not state; start anew
            # (Prometheus takes it as a counter reset).
            os.unlink(path)
            log.info("event=bpf-counters-reset path=%s slots=%d", path, len(COUNTER_NAMES))
            continue
        if found[:3] != shape:
            raise DatapathError(
                f"pinned map {path} has (type, key size, value size, entries) {found}, "
                f"this kroute expects {(*shape, '...')}; it was made by another kroute "
                f"version: remove it (`rm {path}`) and restart kroute, which refills it"
            )
        if name in ("nat_out", "nat_in") and found[3] != max_nat_entries:
            raise DatapathError(
                f"pinned NAT table {path} holds {found[3]} entries, masquerade.maxEntries "
                f"asks for {max_nat_entries}: set maxEntries to {found[3]}, or remove "
                f"{pin_dir}/nat_out and {pin_dir}/nat_in (dropping current NAT flows)"
            )


def remove_pins(pin_dir: str = DEFAULT_PIN_DIR) -> bool:
    """Remove kroute's pinned maps and their directory (programs still attached keep their
    own references to the maps until detached). True if the directory existed."""
    if not os.path.isdir(pin_dir):
        return False
    shutil.rmtree(pin_dir)
    return True
