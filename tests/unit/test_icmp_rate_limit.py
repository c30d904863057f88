"""The node's ICMP sysctls as the BPF time-exceeded limits (datapath/bpf_compile.py)."""

from __future__ import annotations

from pathlib import Path

from datapath.bpf_compile import IcmpRateLimit


def flags(limit: IcmpRateLimit) -> dict[str, str]:
    return dict(f.removeprefix("-D").split("=") for f in limit.cflags())


def test_kernel_defaults_give_one_per_second_per_sender_and_a_thousand_in_all() -> None:
    assert flags(IcmpRateLimit()) == {
        "TE_PEER_INTERVAL_NS": "1000000000ull",
        "TE_GLOBAL_COST_NS": "1000000ull",
        "TE_GLOBAL_BURST": "50ull",
    }


def test_sysctls_are_read_and_missing_or_garbled_ones_keep_the_default(tmp_path: Path) -> None:
    (tmp_path / "icmp_ratelimit").write_text("250\n")
    (tmp_path / "icmp_msgs_per_sec").write_text("4000\n")
    (tmp_path / "icmp_msgs_burst").write_text("not a number\n")
    limit = IcmpRateLimit.from_sysctls(str(tmp_path))
    assert limit == IcmpRateLimit(ratelimit_ms=250, msgs_per_sec=4000)
    assert flags(limit)["TE_PEER_INTERVAL_NS"] == "250000000ull"
    assert flags(limit)["TE_GLOBAL_COST_NS"] == "250000ull"


def test_time_exceeded_outside_the_mask_or_zero_limits_turn_limiting_off() -> None:
    unmasked = IcmpRateLimit(ratemask=6168 & ~(1 << 11))
    assert flags(unmasked)["TE_PEER_INTERVAL_NS"] == "0ull"
    assert flags(unmasked)["TE_GLOBAL_COST_NS"] == "0ull"
    zero = flags(IcmpRateLimit(ratelimit_ms=0, msgs_per_sec=0))
    assert zero["TE_PEER_INTERVAL_NS"] == "0ull" and zero["TE_GLOBAL_COST_NS"] == "0ull"
