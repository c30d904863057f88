"""bgpd.cli.datapath: the `kroute status` datapath lines and `kroute datapath` table."""

from __future__ import annotations

from typing import Any

from bgpd.cli.datapath import format_datapath, status_lines
from bgpd.cli.main import build_parser

BPF: dict[str, Any] = {
    "hostRouting": "BPF",
    "reason": "",
    "ipForward": False,
    "masquerade": {"enabled": False, "active": None},
    "attached": {"eth0": "from_netdev", "kr1": "from_pod"},
    "skippedRoutes": [],
    "lastError": None,
    "pinDir": "/sys/fs/bpf/kroute",
    "maps": {
        "local_pods": {"entries": 1, "max": 4096, "items": {"10.244.1.5": 7}},
        "remote_routes": {"entries": 2, "max": 16384, "items": {}},
    },
    "counters": {"forwarded_local": 12, "forwarded_remote": 3},
}


def test_status_lines_say_which_path_forwards_and_why() -> None:
    assert status_lines({"datapath": None}) == []
    assert status_lines({"datapath": BPF}) == [
        ("Host Routing", "BPF"),
        ("Masquerading", "Disabled"),
    ]
    legacy = {**BPF, "hostRouting": "Legacy", "reason": "datapath.bpf.enabled=false"}
    assert status_lines({"datapath": legacy})[0] == (
        "Host Routing",
        "Legacy (datapath.bpf.enabled=false)",
    )
    failing = {**BPF, "lastError": "interface kr1 not found"}
    assert status_lines({"datapath": failing})[-1] == (
        "Datapath",
        "SYNC FAILING: interface kr1 not found",
    )


def test_datapath_table_lists_programs_maps_and_counters() -> None:
    text = format_datapath(BPF)
    assert text.startswith("Host Routing: BPF\nMasquerading: Disabled\nip_forward:   0")
    assert "| kr1       | from_pod     |" in text
    assert "| local_pods    | 1       | 4096  | 0.0% |" in text
    assert "| forwarded_local  | 12    |" in text
    legacy = {"hostRouting": "Legacy", "reason": "BPF unavailable: no bcc", "ipForward": True}
    assert format_datapath(legacy) == (
        "Host Routing: Legacy (BPF unavailable: no bcc)\nMasquerading: Disabled\nip_forward:   1"
    )


def test_datapath_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["datapath", "-o", "json"])
    assert args.output == "json" and args.func.__name__ == "cmd_datapath"
