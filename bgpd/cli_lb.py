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

from bgpd.client import call, socket_path
from bgpd.config import DEFAULT_SOCKET
from bgpd.errors import ConfigError

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
    answer = call(socket_path(args.socket), f"/{field}/apply", "POST", body={field: docs})
    return _report(args.kind, answer)


def cmd_delete(args: argparse.Namespace) -> int:
    if args.kind == "service" and args.name.count("/") != 1:
        raise ConfigError([f"{args.name}: write the service as NAMESPACE/NAME"])
    query = urllib.parse.urlencode({"name": args.name})
    answer = call(socket_path(args.socket), f"/{args.kind}s/delete?{query}", "POST")
    return _report(args.kind, answer)


def register(sub: Any) -> None:
    """Add `pool` and `service` to the `kroute` subcommands."""
    for kind, example, name_help in (
        ("pool", "kroute pool apply -f blue.yaml", "pool name"),
        ("service", "kroute service apply -f www.yaml", "NAMESPACE/NAME"),
    ):
        parser = sub.add_parser(kind, help=f"LoadBalancer {kind}s in the cluster store")
        actions = parser.add_subparsers(dest=f"{kind}_command", required=True, metavar="ACTION")
        apply = actions.add_parser(
            "apply",
            help=f"create or replace {kind}s from a YAML/JSON file",
            description=f"Example: {example} (one document, a list, or several)",
        )
        apply.add_argument("-f", "--file", required=True, help="YAML or JSON file")
        apply.set_defaults(func=cmd_apply, kind=kind)
        delete = actions.add_parser(
            "delete",
            help=f"delete a {kind} from the cluster store",
            description=f"Example: kroute {kind} delete "
            + ("blue" if kind == "pool" else "web/www"),
        )
        delete.add_argument("name", help=name_help)
        delete.set_defaults(func=cmd_delete, kind=kind)
        for action in (apply, delete):
            action.add_argument(
                "--socket", help=f"daemon socket (default: $KROUTE_SOCKET or {DEFAULT_SOCKET})"
            )
