"""systemd/kroute.service: `systemd-analyze verify` finds nothing to say, and the unit
keeps its promises (notify, watchdog, check-config first, SIGHUP reload, least
capabilities with a reason for each)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "kroute.service"
INSTALLED_KROUTE = "/usr/local/bin/kroute"


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit (all sections), in order, comments dropped."""
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def capabilities() -> list[str]:
    """The unit's bounding set (what tests/integration/test_systemd.py runs kroute with)."""
    (bounding,) = unit_settings(UNIT.read_text())["CapabilityBoundingSet"]
    return bounding.split()


def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    """verify insists the ExecStart binary exists: point it at this checkout's kroute."""
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze is not None, "systemd-analyze missing: scripts/setup installs systemd"
    kroute = ROOT / ".venv" / "bin" / "kroute"
    assert kroute.exists()
    text = UNIT.read_text()
    settings = unit_settings(text)
    assert all(settings[k][0].startswith(INSTALLED_KROUTE) for k in ("ExecStartPre", "ExecStart"))
    unit = tmp_path / "kroute.service"
    unit.write_text(text.replace(INSTALLED_KROUTE, str(kroute)))
    done = subprocess.run(
        [systemd_analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # unknown keys are only warnings (exit 0): any output at all is a failure
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_unit_promises() -> None:
    settings = unit_settings(UNIT.read_text())
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] == ["60s"]
    assert settings["ExecStartPre"] == [f"{INSTALLED_KROUTE} check-config /etc/kroute/kroute.yaml"]
    assert settings["ExecStart"] == [f"{INSTALLED_KROUTE} run --config /etc/kroute/kroute.yaml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["RuntimeDirectory"] == ["kroute"]  # runDir's default, /run/kroute
    assert settings["RuntimeDirectoryPreserve"] == ["yes"]  # drain-state survives restarts
    assert settings["StateDirectory"] == ["kroute"]  # ipam.file's default directory
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"]


def test_every_capability_says_why() -> None:
    text = UNIT.read_text()
    caps = capabilities()
    assert not {"CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_NET_RAW"} & set(caps)
    for cap in caps:
        assert f"#   {cap} " in text, f"{cap}: no comment saying why kroute needs it"
