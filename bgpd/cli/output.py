"""How every `kroute` command presents itself: help that ends with examples, the
documented exit codes, and `-o table|json|yaml` on every command that reads.

`table` is for people and may change; `json` and `yaml` print the daemon's answer
as it is (the documents docs/operations.md describes), for scripts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")
EXIT_CODES = """exit codes:
  0  success
  1  failure at run time: the daemon cannot be reached, or it refused the request
     (a reload of an invalid file, an unknown node), or the kernel refused a change
  2  usage: bad arguments, or an invalid config file (check-config, run)
"""


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


def command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str, *examples: str
) -> argparse.ArgumentParser:
    """A subcommand whose help ends with examples (every subcommand has one)."""
    return sub.add_parser(
        name,
        help=text,
        description=text[0].upper() + text[1:] + ".",
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The `-o table` layout every command shares: a header row and ruled columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c:<{w}} " for c, w in zip(cells, widths, strict=True)) + "|"

    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])
