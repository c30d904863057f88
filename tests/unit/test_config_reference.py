"""docs/configuration.md is generated from the config model and must be current."""

from __future__ import annotations

from pathlib import Path

from bgpd.cli.main import main
from bgpd.config.reference import reference, rows, undocumented

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_key_says_what_it_means() -> None:
    assert undocumented() == [], "add a description= or an entry in MEANINGS"


def test_the_checked_in_reference_is_current() -> None:
    assert DOC.read_text() == reference(), (
        "docs/configuration.md is out of date: run "
        "`kroute config-reference --write docs/configuration.md`"
    )


def test_the_reference_follows_the_model() -> None:
    keys = {key: (kind, bounds, default) for key, kind, bounds, default, _ in rows()}
    assert keys["bgp.asn"] == ("integer", "1-4294967295", "required")
    assert keys["bgp.holdTime"][2] == "`90`"
    assert keys["bgp.mesh"][0] == "`full` \\| `none`"
    assert keys["bgp.peers[].import.allow"][0] == "list of CIDR"
    assert "cluster.nodes[].podCIDRs" in keys


def test_the_command_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    assert main(["config-reference", "--write", str(out)]) == 0
    assert out.read_text() == reference()
