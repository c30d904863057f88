"""datapath.bpf_pins against bpffs: pinned maps of another kroute's layout are refused with
the command that clears them, except the counters, which are statistics and start anew."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from common.errors import DatapathError
from datapath.bpf_maps import COUNTER_NAMES
from datapath.bpf_pins import check_pins, pinned_shape

pytestmark = pytest.mark.bpf

HASH, PERCPU_ARRAY = 1, 6


@pytest.fixture
def pin_dir() -> Iterator[str]:
    path = f"/sys/fs/bpf/kroute-test-pins-{secrets.token_hex(4)}"
    os.makedirs(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pin_map(path: str, map_type: int, key: int, value: int, entries: int) -> None:
    lib = ctypes.CDLL("libbcc.so.0", use_errno=True)
    lib.bcc_create_map.argtypes = [ctypes.c_int, ctypes.c_char_p, *[ctypes.c_int] * 4]
    fd = lib.bcc_create_map(map_type, b"kroute_test", key, value, entries, 0)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert lib.bpf_obj_pin(fd, path.encode()) == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)


def test_counters_of_another_size_start_anew(pin_dir: str) -> None:
    path = f"{pin_dir}/counters"
    pin_map(path, PERCPU_ARRAY, 4, 8, len(COUNTER_NAMES) - 1)  # an older kroute's counters
    assert pinned_shape(path) == (PERCPU_ARRAY, 4, 8, len(COUNTER_NAMES) - 1)
    check_pins(pin_dir, 4096)
    assert not os.path.exists(path)


def test_a_map_of_another_layout_is_refused_with_the_fix(pin_dir: str) -> None:
    path = f"{pin_dir}/local_pods"
    pin_map(path, HASH, 4, 16, 64)  # the value is 20 bytes in this kroute
    with pytest.raises(DatapathError, match=f"rm {path}"):
        check_pins(pin_dir, 4096)
    assert os.path.exists(path)
