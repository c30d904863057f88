"""Log lines: one line per event, `key=value` fields, as text or as JSON.

Code logs `log.info("event=peer-up peer=%s asn=%d", ...)`. The text format prints
`TIME level=INFO logger=NAME event=peer-up peer=... asn=...`; the JSON format
(`--log-format json`, or `log.format: json` in the config) prints the same fields as
one JSON object per line, for log shippers. A traceback never breaks a line: it
becomes the `exc` field. Secrets never reach a log call in the first place (password
files are read where they are used and never formatted into messages).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from typing import Literal

from bgpd.config.types import Model

LOG_FORMATS = ("text", "json")
_FIELD = re.compile(r"""([A-Za-z_][\w.-]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")


class LogConfig(Model):
    """The config file's `log` section."""

    format: Literal["text", "json"] = "text"


def fields(message: str) -> dict[str, str]:
    """The `key=value` pairs of a message (quotes kept off); other words go to `msg`."""
    found: dict[str, str] = {}
    rest = []
    position = 0
    for match in _FIELD.finditer(message):
        rest.append(message[position : match.start()])
        position = match.end()
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[match.group(1)] = value
    rest.append(message[position:])
    words = " ".join("".join(rest).split())
    if words:
        found["msg"] = words
    return found


def _time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return None


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} level={record.levelname} logger={record.name} "
        line += record.getMessage().replace("\n", "\\n")
        exc = _exception(self, record)
        if exc:
            line += " exc=" + json.dumps(exc)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {"time": _time(record), "level": record.levelname, "logger": record.name}
        document.update(fields(record.getMessage()))
        exc = _exception(self, record)
        if exc:
            document["exc"] = exc
        return json.dumps(document)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """kroute's stderr handler (replaced by the next `configure`, others left alone)."""


def configure(verbose: bool, log_format: str) -> None:
    """(Re)configure the root logger: one handler on stderr in `log_format`."""
    handler = _Handler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
