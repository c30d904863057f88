"""scripts/check_layers.py, the `make lint` check that imports only point down: clean on
the tree as it is, and it fails once a circle or an upward import is added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_layers.py"
PACKAGES = ("common", "ipam", "lbipam", "datapath", "bgpd", "lab")


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(root)], capture_output=True, text=True, check=False
    )


def copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("*.c"))
    return dest


def add_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_has_no_circle_and_no_upward_import() -> None:
    result = check(ROOT)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("0 problems")


def test_a_lower_layer_importing_the_daemon_fails(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    add_line(tree / "ipam" / "allocator.py", "from bgpd.errors import KrouteError")
    add_line(tree / "bgpd" / "config" / "types.py", "from bgpd.daemon import Daemon")
    result = check(tree)
    assert result.returncode == 1
    assert "upward import: bgpd.config.types -> bgpd.daemon" in result.stdout
    assert "upward import: ipam.allocator -> bgpd" in result.stdout


def test_a_circle_fails_even_behind_type_checking(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    behind = "if TYPE_CHECKING:\n    from bgpd.bgp.sessions import Sessions"
    add_line(tree / "bgpd" / "bgp" / "rib.py", "from typing import TYPE_CHECKING\n" + behind)
    result = check(tree)
    assert result.returncode == 1
    assert "import circle: bgpd.bgp.rib, bgpd.bgp.sessions" in result.stdout


def test_a_unit_without_a_layer_is_named(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    (tree / "bgpd" / "newthing").mkdir()
    (tree / "bgpd" / "newthing" / "__init__.py").write_text('"""A new package."""\n')
    result = check(tree)
    assert result.returncode == 1
    assert "no layer: bgpd.newthing (add it to LAYERS in scripts/check_layers.py)" in result.stdout
