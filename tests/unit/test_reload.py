"""Reload prepares everything first, then applies: a failure at any step (the file, a
password file, rendering exabgp.conf, writing it, a restart-only change) leaves the
running state exactly as it was; SIGHUP reloads as a task on the loop."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.config.model import parse_config
from bgpd.daemon import Daemon
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import FakeSpeaker, StartDaemon, cluster_data

UPSTREAM = "192.0.2.1"


def running_state(daemon: Daemon) -> tuple[object, ...]:
    """What a user sees of the running daemon: its config, sessions and their settings,
    what it advertises and exabgp.conf as written."""
    speaker = daemon.speaker
    assert isinstance(speaker, FakeSpeaker)
    return (
        daemon.config,
        [(address, status.peer, status.state) for address, status in daemon.peers.items()],
        daemon.sessions.local,
        dict(daemon.local_prefixes),
        daemon.cluster_id,
        speaker.spec,
        speaker.config_text,
    )


def with_peer(data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    data["bgp"]["peers"] = [{"address": UPSTREAM, "asn": 65000, **fields}]
    return data


def password_gone_before_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readable when the file was loaded, not when exabgp.conf is rendered."""

    def unreadable(path: str) -> str:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("bgpd.bgp.exabgp_conf.read_password", unreadable)


Step = Callable[[Path, dict[str, Any], pytest.MonkeyPatch, Daemon], str]


def bad_yaml(path: Path, data: dict[str, Any], mp: pytest.MonkeyPatch, d: Daemon) -> str:
    path.write_text("bgp: [unclosed\n")
    return "not valid YAML"


def invalid_field(path: Path, data: dict[str, Any], mp: pytest.MonkeyPatch, d: Daemon) -> str:
    path.write_text(yaml.safe_dump(with_peer(data, asn=0)))
    return "bgp.peers[0].asn"


def password_file_missing(
    path: Path, data: dict[str, Any], mp: pytest.MonkeyPatch, d: Daemon
) -> str:
    path.write_text(yaml.safe_dump(with_peer(data, passwordFile=str(path.parent / "none"))))
    return "bgp.peers[0].passwordFile: cannot read"


def render_fails(path: Path, data: dict[str, Any], mp: pytest.MonkeyPatch, d: Daemon) -> str:
    secret = path.parent / "md5"
    secret.write_text("s3cret")
    path.write_text(yaml.safe_dump(with_peer(data, passwordFile=str(secret))))
    password_gone_before_render(mp)
    return f"passwordFile {secret}: cannot read: Permission denied"


def write_fails(path: Path, data: dict[str, Any], mp: pytest.MonkeyPatch, d: Daemon) -> str:
    path.write_text(yaml.safe_dump(with_peer(data)))
    speaker = d.speaker
    assert isinstance(speaker, FakeSpeaker)
    speaker.write_error = "No space left on device"
    return "cannot write exabgp.conf"


def restart_only(path: Path, data: dict[str, Any], mp: pytest.MonkeyPatch, d: Daemon) -> str:
    changed = with_peer(data)
    changed["bgp"]["listenPort"] = 1179
    path.write_text(yaml.safe_dump(changed))
    return "bgp.listenPort: changed from 179 to 1179; restart kroute"


@pytest.mark.parametrize(
    "step",
    [bad_yaml, invalid_field, password_file_missing, render_fails, write_fails, restart_only],
)
async def test_a_failing_step_leaves_the_running_state_as_it_was(
    tmp_path: Path, start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch, step: Step
) -> None:
    data = cluster_data(tmp_path)
    path = tmp_path / "kroute.yaml"
    path.write_text(yaml.safe_dump(data))
    daemon = await start_daemon(data, config_path=str(path))
    before = running_state(daemon)
    expected = step(path, data, monkeypatch, daemon)
    errors = await daemon.reload()
    assert any(expected in line for line in errors), errors
    assert running_state(daemon) == before
    monkeypatch.undo()  # the step fixed: the same file applies
    speaker = daemon.speaker
    assert isinstance(speaker, FakeSpeaker)
    speaker.write_error = None
    if step is not restart_only and step is not bad_yaml:
        path.write_text(yaml.safe_dump(with_peer(data)))
        assert await daemon.reload() == []
        assert UPSTREAM in {str(a) for a in daemon.peers}
        assert f"neighbor {UPSTREAM} {{" in speaker.config_text


async def test_sighup_reloads_as_a_task_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler only schedules: a reload that fails (here: rendering) is refused
    and logged like any other, the daemon keeps running, and the next SIGHUP applies."""
    data = cluster_data(tmp_path)
    path = tmp_path / "kroute.yaml"
    path.write_text(yaml.safe_dump(data))
    daemon = Daemon(
        parse_config(data),
        FakeKernelRoutes(),
        speaker_factory=FakeSpeaker,
        config_path=str(path),
        loopback=FakeLoopback(),
        lb_store=MemoryLbStore(),
    )
    running = asyncio.create_task(daemon.run())  # it installs the signal handlers
    try:
        await asyncio.sleep(0.05)
        before = running_state(daemon)
        render_fails(path, data, monkeypatch, daemon)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert not running.done() and running_state(daemon) == before
        monkeypatch.undo()
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            await asyncio.sleep(0.02)
            if UPSTREAM in {str(a) for a in daemon.peers}:
                break
        assert UPSTREAM in {str(a) for a in daemon.peers}
    finally:
        daemon.request_stop()
        await running


@pytest.mark.parametrize(("before", "after"), [("full", "none"), ("none", "full")])
async def test_a_mesh_change_is_refused_at_reload(
    tmp_path: Path, start_daemon: StartDaemon, before: str, after: str
) -> None:
    """`bgp.mesh` full <-> none at reload would drop (or add) every mesh session at
    once: restart-only, said so, and the sessions stay."""
    data = cluster_data(tmp_path)
    data["bgp"]["mesh"] = before
    data["cluster"]["nodes"][1]["routeReflectorClusterId"] = "10.0.0.2"  # one reflector
    path = tmp_path / "kroute.yaml"
    path.write_text(yaml.safe_dump(data))
    daemon = await start_daemon(data, config_path=str(path))
    state = running_state(daemon)
    data["bgp"]["mesh"] = after
    path.write_text(yaml.safe_dump(data))
    assert await daemon.reload() == [
        f"bgp.mesh: changed from {before} to {after}; applied at reload it would close "
        "every node-to-node session (or open them all) at once, and every mesh route would "
        "go with them; restart kroute to apply it"
    ]
    assert running_state(daemon) == state
