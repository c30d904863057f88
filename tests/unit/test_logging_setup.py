"""Log lines (bgpd.config.logging_setup): one line per event, key=value text or JSON."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from bgpd.cli.main import main
from bgpd.config.logging_setup import JsonFormatter, TextFormatter, configure, fields
from bgpd.config.model import parse_config
from common.errors import ConfigError
from tests.unit.conftest import cluster_data


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise OSError("netlink socket closed")
        except OSError:
            info = sys.exc_info()
    return logging.LogRecord("bgpd.daemon", logging.WARNING, __file__, 1, message, args, info)


def test_fields_of_a_message() -> None:
    assert fields("event=peer-up peer=10.0.0.2 asn=65000") == {
        "event": "peer-up",
        "peer": "10.0.0.2",
        "asn": "65000",
    }
    assert fields("event=route-failed error='Network is unreachable' route=x") == {
        "event": "route-failed",
        "error": "Network is unreachable",
        "route": "x",
    }
    assert fields("kernel route failed op=upsert") == {"op": "upsert", "msg": "kernel route failed"}


def test_text_is_one_line_even_with_a_traceback() -> None:
    line = TextFormatter().format(record("event=reconcile-failed count=%d", 3, exc=True))
    assert "\n" not in line
    assert ' level=WARNING logger=bgpd.daemon event=reconcile-failed count=3 exc="Traceback' in line
    assert "OSError: netlink socket closed" in line


def test_json_is_one_object_per_line_with_the_fields() -> None:
    line = JsonFormatter().format(record("event=peer-down peer=%s reason=%r", "10.0.0.2", "x y"))
    assert "\n" not in line
    document = json.loads(line)
    assert document["level"] == "WARNING" and document["logger"] == "bgpd.daemon"
    assert document["event"] == "peer-down"
    assert document["peer"] == "10.0.0.2"
    assert document["reason"] == "x y"
    assert document["time"].endswith("Z")
    with_exc = json.loads(JsonFormatter().format(record("event=failed", exc=True)))
    assert with_exc["exc"].startswith("Traceback")


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__name__ == "_Handler"]


def test_log_format_flag_and_config_field(tmp_path: Path) -> None:
    assert main(["--log-format", "json", "status", "--socket", "/nonexistent.sock"]) == 1
    assert [type(h.formatter) for h in ours()] == [JsonFormatter]
    configure(False, "text")
    assert [type(h.formatter) for h in ours()] == [TextFormatter]
    data = cluster_data(tmp_path)
    data["log"] = {"format": "json"}
    assert parse_config(data).log.format == "json"
    data["log"] = {"format": "xml"}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.errors[0].startswith("log.format: ")
