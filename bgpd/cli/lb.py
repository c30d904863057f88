"""`kroute pool apply|delete` and `kroute service apply|delete`: LoadBalancer pools and
services in the cluster's LB-IPAM store, changed through the local daemon's unix socket
(the daemon validates and writes; every node follows the store).

A file holds one document, a list of them, or several YAML documents (`---`); YAML or
JSON. Invalid input exits 2 with one `error:` line per problem and changes nothing.
"""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from bgpd.api.client import add_target_flags, call, target
from bgpd.cli.output import command
from common.errors import ConfigError

EXIT_OK = 0


def read_documents(path: str) -> list[Any]:
    """Every document of a YAML/JSON file, lists flattened; ConfigError names the file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it ({exc.strerror})"]) from None
    try:
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML or JSON ({exc})"]) from None
    docs: list[Any] = []
    for doc in loaded:
        docs.extend(doc if isinstance(doc, list) else [doc])
    if not docs:
        raise ConfigError([f"{path}: holds no document; write at least one"])
    return docs


def _report(kind: str, answer: dict[str, Any]) -> int:
    for name, change in answer["changes"].items():
        print(f"{kind} {name} {change}")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    field = f"{args.kind}s"
    docs = read_documents(args.file)
    answer = call(target(args), f"/{field}/apply", "POST", body={field: docs})
    return _report(args.kind, answer)


def cmd_delete(args: argparse.Namespace) -> int:
    if args.kind == "service" and args.name.count("/") != 1:
        raise ConfigError([f"{args.name}: write the service as NAMESPACE/NAME"])
    query = urllib.parse.urlencode({"name": args.name})
    answer = call(target(args), f"/{args.kind}s/delete?{query}", "POST")
    return _report(args.kind, answer)


def register(sub: Any) -> None:
    """Add `pool` and `service` to the `kroute` subcommands."""
    for kind, name, example in (
        ("pool", "blue", "blue.yaml"),
        ("service", "web/www", "www.yaml"),
    ):
        group = command(
            sub,
            kind,
            f"LoadBalancer {kind}s in the cluster store (apply, delete)",
            f"kroute {kind} apply -f {example}",
            f"kroute {kind} delete {name}",
        )
        actions = group.add_subparsers(dest=f"{kind}_command", required=True, metavar="ACTION")
        apply = command(
            actions,
            "apply",
            f"create or replace {kind}s from a YAML/JSON file (one, a list, or several)",
            f"kroute {kind} apply -f {example}",
        )
        apply.add_argument("-f", "--file", required=True, help="YAML or JSON file")
        apply.set_defaults(func=cmd_apply, kind=kind)
        delete = command(
            actions,
            "delete",
            f"delete a {kind} from the cluster store (its addresses are withdrawn)",
            f"kroute {kind} delete {name}",
        )
        delete.add_argument("name", help="NAMESPACE/NAME" if kind == "service" else "pool name")
        delete.set_defaults(func=cmd_delete, kind=kind)
        for action in (apply, delete):
            add_target_flags(action, read_only=False)
