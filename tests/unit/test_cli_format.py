"""bgpd.cli.main: the `kroute peers` / `kroute status` tables, the socket path, check-config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.api.client import socket_path
from bgpd.api.status import status_report
from bgpd.bgp.events import PathAttributes, PeerOpen, PeerState, RoutesUpdate
from bgpd.cli import main as cli
from bgpd.cli.main import main
from bgpd.cli.tables import format_peers, format_status
from bgpd.config.model import DEFAULT_SOCKET, parse_config
from bgpd.daemon import Daemon
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import CIDR_B, NODE_B, FakeSpeaker, cluster_data, settle

REPO = Path(__file__).resolve().parents[2]

STATUS: dict[str, Any] = {
    "node": "node-a",
    "routerId": "10.0.0.1",
    "asn": 64512,
    "nodeIP": "10.0.0.1",
    "ready": True,
    "startedAt": "2026-01-01T00:00:00+00:00",
    "lastReconcile": "2026-01-01T00:00:05+00:00",
    "speaker": {
        "running": True,
        "pid": 4242,
        "restarts": 1,
        "malformedLines": 0,
        "commandErrors": 0,
    },
    "peers": [
        {
            "name": "node-b",
            "address": "10.0.0.2",
            "asn": 64512,
            "type": "node-to-node mesh",
            "state": "established",
            "since": "2026-01-01T00:00:03+00:00",
            "info": "Established",
            "gracefulRestartTime": 120,
            "prefixesReceived": 1,
            "prefixesStale": 0,
            "prefixesAdvertised": 1,
        },
        {
            "name": "node-c",
            "address": "10.0.0.3",
            "asn": 64512,
            "type": "node-to-node mesh",
            "state": "idle",
            "since": None,
            "info": "",
            "gracefulRestartTime": None,
            "prefixesReceived": 0,
            "prefixesStale": 0,
            "prefixesAdvertised": 0,
        },
    ],
    "advertised": ["10.244.1.0/24"],
    "kernelRoutes": [
        {"prefix": "10.244.1.0/24", "nexthops": [], "type": "blackhole", "stale": False},
        {"prefix": "10.244.2.0/24", "nexthops": ["10.0.0.2"], "type": "unicast", "stale": False},
    ],
    "adoptedRoutesPending": 0,
    "reconcileErrors": 0,
}


def status(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(STATUS)
    data.update(changes)
    return data


def cells(table_line: str) -> list[str]:
    return [c.strip() for c in table_line.strip("|").split("|")]


# -- format_peers ------------------------------------------------------------------------


def test_format_peers_table() -> None:
    text = format_peers(status())
    lines = text.splitlines()
    assert lines[0] == "IPv4 BGP status of node-a (AS 64512, router ID 10.0.0.1)"
    assert cells(lines[2]) == ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]
    assert cells(lines[4]) == [
        "10.0.0.2",
        "node-to-node mesh",
        "up",
        "2026-01-01T00:00:03Z",
        "Established",
    ]
    assert cells(lines[5]) == ["10.0.0.3", "node-to-node mesh", "start", "-", "idle"]
    rules = [line for line in lines[1:] if line.startswith("+")]
    assert len(rules) == 3
    # every row of the table has the same width, columns line up
    table = lines[1:]
    assert len({len(line) for line in table}) == 1
    assert len({tuple(i for i, ch in enumerate(line) if ch in "|+") for line in table}) == 1


def test_format_peers_without_peers() -> None:
    text = format_peers(status(peers=[]))
    assert text.splitlines() == [
        "IPv4 BGP status of node-a (AS 64512, router ID 10.0.0.1)",
        "No peers configured.",
    ]


def test_format_peers_long_info_widens_column() -> None:
    data = status()
    data["peers"][1]["info"] = "notification sent (4,0) hold timer expired"
    lines = format_peers(data).splitlines()
    assert cells(lines[5])[4] == "notification sent (4,0) hold timer expired"
    assert len({len(line) for line in lines[1:]}) == 1


# -- format_status -----------------------------------------------------------------------


def test_format_status_summary() -> None:
    text = format_status(status())
    fields = dict(line.split(":", 1) for line in text.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["Node"] == "node-a (10.0.0.1), router ID 10.0.0.1, AS 64512"
    assert fields["Ready"] == "yes"
    assert fields["BGP speaker"] == "ExaBGP running (pid 4242), restarts 1"
    assert fields["BGP peers"] == "1/2 established"
    assert fields["Advertised"] == "10.244.1.0/24"
    assert fields["Kernel routes"] == "2 (proto bgp): 1 learned, 1 blackhole"
    assert "Graceful restart" not in fields
    # values start in one column
    assert len({line.index(line.split(":", 1)[1].strip()) for line in text.splitlines()}) == 1


def test_format_status_not_ready_speaker_down_adoption_pending() -> None:
    data = status(ready=False, advertised=[], kernelRoutes=[], adoptedRoutesPending=3)
    data["speaker"] = {**data["speaker"], "running": False, "pid": None}
    text = format_status(data)
    assert "Ready:" in text
    assert "no (first reconcile pending)" in text
    assert "ExaBGP NOT running, restarts 1" in text
    assert "Advertised:" in text
    assert "nothing" in text
    assert "0 (proto bgp): 0 learned, 0 blackhole" in text
    assert "3 adopted routes awaiting refresh" in text


async def test_formats_accept_a_real_status_report(tmp_path: Path) -> None:
    config = parse_config(cluster_data(tmp_path), host_defaults=True)
    daemon = Daemon(
        config,
        FakeKernelRoutes(),
        speaker_factory=FakeSpeaker,
        loopback=FakeLoopback(),
        lb_store=MemoryLbStore(),
    )
    await daemon.start()
    try:
        daemon.handle_event(PeerOpen(NODE_B, str(NODE_B), 64512, 9, 120))
        daemon.handle_event(PeerState(NODE_B, "up"))
        attrs = PathAttributes(next_hop=NODE_B)
        daemon.handle_event(RoutesUpdate(NODE_B, announced=((CIDR_B, attrs),)))
        assert await settle(lambda: CIDR_B in daemon.kernel_routes)
        report = status_report(daemon)
    finally:
        await daemon.stop()
    peers = format_peers(report)
    assert "10.0.0.2" in peers
    assert "10.0.0.3" in peers
    assert "Established" in peers
    summary = format_status(report)
    assert "1/2 established" in summary
    assert "2 (proto bgp): 1 learned, 1 blackhole" in summary


# -- socket path -------------------------------------------------------------------------


def test_socket_path_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KROUTE_SOCKET", raising=False)
    assert socket_path(None) == DEFAULT_SOCKET == "/run/kroute/kroute.sock"


def test_socket_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KROUTE_SOCKET", "/tmp/other.sock")
    assert socket_path(None) == "/tmp/other.sock"
    assert socket_path("/tmp/explicit.sock") == "/tmp/explicit.sock"


def test_socket_path_empty_environment_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KROUTE_SOCKET", "")
    assert socket_path(None) == DEFAULT_SOCKET


def test_status_command_without_daemon_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--socket", str(tmp_path / "absent.sock")])
    assert code == cli.EXIT_FAIL == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach kroute at ")


# -- check-config ------------------------------------------------------------------------


def test_check_config_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(cluster_data(tmp_path)))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"{path}: valid (node node-a, AS 64512, 2 peers)"


def test_check_config_example_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / "config" / "kroute.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_config_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = cluster_data(tmp_path)
    data["bgp"]["asn"] = 0
    data["bgp"]["bogus"] = 1
    data["status"]["listen"] = "nope"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "error: bgp.asn: must be 1-4294967295, got 0" in lines
    assert "error: bgp.bogus: unknown key; remove it or check its spelling" in lines
    assert any(line.startswith("error: status.listen: ") for line in lines)
    assert len(lines) == 3
    assert "valid" not in captured.out


def test_check_config_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("bgp:\n  asn: [64512\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: not valid YAML at line ")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_config_without_asn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = cluster_data(tmp_path)
    del data["bgp"]["asn"]
    path = tmp_path / "no-asn.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 2
    assert "error: bgp.asn: required; set it" in capsys.readouterr().err.splitlines()


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


def test_run_refuses_invalid_config_like_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = cluster_data(tmp_path / "run")
    data["bgp"]["asn"] = 0
    data["bgp"]["bogus"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 2
    checked = capsys.readouterr().err
    assert main(["run", "--config", str(path)]) == 2
    assert capsys.readouterr().err == checked
    assert not (tmp_path / "run").exists()  # nothing started, not even the run dir
