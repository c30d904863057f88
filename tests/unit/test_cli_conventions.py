"""The CLI's conventions, for every subcommand (also those added later): help with
examples, `-o table|json|yaml` and `--address` on commands that read, only
`--socket` on commands that change the node, documented exit codes; and the status
app's read-only TCP side."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bgpd.api.status import build_app
from bgpd.cli import main as cli
from bgpd.cli.main import READ_COMMANDS, build_parser, main
from tests.unit import test_metrics
from tests.unit.test_metrics import MakeDaemon

MUTATING = (
    ("drain",),
    ("undrain",),
    ("reload",),
    ("node", "remove"),
    ("pool", "apply"),
    ("pool", "delete"),
    ("service", "apply"),
    ("service", "delete"),
)
POSTS = (
    "/drain",
    "/undrain",
    "/reload",
    "/nodes/remove?name=node-b",
    "/pools/apply",
    "/pools/delete?name=blue",
    "/services/apply",
    "/services/delete?name=web/www",
)

make_daemon = test_metrics.make_daemon  # fake speaker and kernel, an upstream peer


def subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from subcommands(child, (*path, name))


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def test_every_subcommand_has_an_example_in_its_help() -> None:
    found = list(subcommands(build_parser()))
    assert len(found) > 15
    for path, parser in found:
        epilog = parser.epilog or ""
        assert epilog.startswith("examples:\n  "), f"kroute {' '.join(path)}: no example"
        help_text = parser.format_help()
        assert "examples:\n  " in help_text  # not re-wrapped into one line


def test_every_read_command_has_the_same_output_and_target_flags() -> None:
    parsers = dict(subcommands(build_parser()))
    reads = [(name,) for name, *_ in READ_COMMANDS]
    assert set(reads) <= set(parsers)
    for path in reads:
        flags = options(parsers[path])
        assert flags["-o"].choices == ("table", "json", "yaml"), path
        assert {"--socket", "--address"} <= set(flags), path


def test_mutating_commands_take_only_the_unix_socket(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parsers = dict(subcommands(build_parser()))
    for path in MUTATING:
        flags = options(parsers[path])
        assert "--socket" in flags and "--address" not in flags, path
    with pytest.raises(SystemExit) as info:
        main(["drain", "--address", "127.0.0.1:9479"])
    assert info.value.code == cli.EXIT_USAGE
    assert "unrecognized arguments: --address" in capsys.readouterr().err


def test_exit_codes_are_documented_in_help_and_operations_page() -> None:
    help_text = build_parser().format_help()
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for code in (cli.EXIT_OK, cli.EXIT_FAIL, cli.EXIT_USAGE):
        assert f"\n  {code}  " in help_text
        assert f"| {code} |" in page


def test_socket_and_address_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["status", "--socket", "/tmp/x.sock", "--address", "127.0.0.1:1"])
    assert info.value.code == cli.EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_address_is_an_error_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["peers", "--address", "nowhere"]) == cli.EXIT_FAIL
    assert capsys.readouterr().err.startswith("error: --address: 'nowhere' must be HOST:PORT")


async def test_read_commands_over_tcp_in_every_format(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    async with TestClient(TestServer(build_app(daemon, control=False))) as client:
        address = f"{client.host}:{client.port}"
        outputs = {}
        for fmt in ("json", "yaml", "table"):
            code, outputs[fmt] = await run_cli(["status", "-o", fmt, "--address", address])
            assert code == cli.EXIT_OK
    # two requests, two snapshots (timestamps move): the same document, not the same values
    as_json, as_yaml = json.loads(outputs["json"]), yaml.safe_load(outputs["yaml"])
    assert as_json.keys() == as_yaml.keys()
    assert as_json["node"] == as_yaml["node"] == "node-a"
    assert outputs["table"].startswith("Node:")


async def run_cli(argv: list[str]) -> tuple[int, str]:
    """`main(argv)` off the loop (it blocks on HTTP): exit code and stdout."""
    out = io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            return main(argv)

    code = await asyncio.get_running_loop().run_in_executor(None, call)
    return code, out.getvalue()


async def test_the_tcp_listener_answers_only_get(make_daemon: MakeDaemon) -> None:
    daemon = await make_daemon()
    public = build_app(daemon, control=False)
    methods = {route.method for route in public.router.routes()}
    assert methods <= {"GET", "HEAD"}, methods  # whatever other modules add
    async with TestClient(TestServer(public)) as client:
        for path in POSTS:
            response = await client.post(path)
            assert response.status == 405, path
    assert daemon.drain_state == "none"
    control = build_app(daemon, control=True)
    assert {"POST"} <= {route.method for route in control.router.routes()}
