#!/usr/bin/env python3
"""Imports only point down: `make lint` fails on an import circle or an upward import.

usage: check_layers.py [ROOT]  -> one line per problem, exit 1 if there is any.

A unit is a top-level package, or a subpackage or module directly under `bgpd/`. Every
unit has a layer (LAYERS, lowest first); a module may import its own unit and units of
lower layers only. Over that, no circle between modules anywhere (Tarjan's strongly
connected components). Imports under `if TYPE_CHECKING:` and inside functions count
too: a circle that only type checkers or late imports see is still a circle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGES = ("common", "ipam", "lbipam", "datapath", "bgpd", "lab")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("common",),  # errors and versioned documents, nothing else of kroute
    ("ipam", "lbipam"),  # pure allocators and their stores
    ("datapath",),  # kernel routes, BPF, overlay, masquerade
    ("bgpd.files", "bgpd.health", "bgpd.config", "bgpd.kube"),
    ("bgpd.bgp", "bgpd.cluster", "bgpd.reconcile"),
    ("bgpd.lb", "bgpd.reload"),
    ("bgpd.daemon",),  # the wiring
    ("bgpd.api",),  # HTTP surface (server and client), systemd notify
    ("bgpd.runner", "lab"),  # the process; the namespace lab that runs processes
    ("bgpd.cli", "bgpd.cni"),  # commands
)


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(module: str, path: Path) -> Iterator[str]:
    """Every dotted name `module` imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph(found: Mapping[str, Path]) -> dict[str, set[str]]:
    """module -> the project's modules it imports (a package's __init__ naming the
    packages it sits in is not an edge)."""

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in found}
    for module, path in found.items():
        for name in imported(module, path):
            target = resolve(name)
            if target is None or target == module:
                continue
            if not (path.name == "__init__.py" and module.startswith(target + ".")):
                edges[module].add(target)
    return edges


def unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bgpd" and len(parts) > 1 else parts[0]


def layer_of() -> dict[str, int]:
    return {name: level for level, names in enumerate(LAYERS) for name in names}


def upward(edges: Mapping[str, set[str]]) -> list[str]:
    levels = layer_of()
    problems = []
    for module in sorted(edges):
        mine = unit(module)
        if mine == "bgpd":
            continue  # bgpd/__init__.py: the package docstring
        if mine not in levels:
            problems.append(f"no layer: {mine} (add it to LAYERS in scripts/check_layers.py)")
            continue
        for target in sorted(edges[module]):
            theirs = unit(target)
            if theirs != mine and levels.get(theirs, len(LAYERS)) >= levels[mine]:
                problems.append(
                    f"upward import: {module} -> {target} ({mine} is in layer {levels[mine]}, "
                    f"{theirs} in layer {levels.get(theirs, '?')}: hand it down instead)"
                )
    return sorted(set(problems))


def circles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else ".")
    edges = graph(modules(root))
    problems = upward(edges) + [f"import circle: {', '.join(c)}" for c in circles(edges)]
    for line in problems:
        print(line)
    print(f"{len(problems)} problems in {len(edges)} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
