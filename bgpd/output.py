"""`-o table|json|yaml`, the same on every command that reads something.

`table` is for people and may change; `json` and `yaml` print the daemon's answer
as it is (the documents the README describes), for scripts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table",
        help="table (default, for people), json or yaml (the daemon's document, for scripts)",
    )


def render(data: Any, output: str, table: Callable[[Any], str]) -> str:
    """`data` in the chosen format; `table` draws it for people."""
    if output == "json":
        return json.dumps(data, indent=2)
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
    return table(data)
