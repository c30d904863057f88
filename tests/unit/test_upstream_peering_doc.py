"""The upstream router examples of docs/upstream-peering.md are the configs the lab (and
so the tests) runs: each block after an `upstream-example` marker equals
lab.upstream_examples."""

from __future__ import annotations

import re
from pathlib import Path

from lab.upstream_examples import examples

PAGE = Path(__file__).resolve().parents[2] / "docs" / "upstream-peering.md"
BLOCK = re.compile(r"<!-- upstream-example: (\w+) -->\n```\w*\n(.*?)```", re.DOTALL)


def test_upstream_examples_are_what_the_lab_runs() -> None:
    shown = dict(BLOCK.findall(PAGE.read_text()))
    rendered = examples()
    assert set(shown) == set(rendered) == {"kroute", "bird", "frr"}
    for name, text in rendered.items():
        assert shown[name] == text, (
            f"docs/upstream-peering.md's {name} example differs from what the lab renders; "
            "paste the output of `python -m lab.upstream_examples`"
        )


def test_the_kroute_example_passes_check_config() -> None:
    import yaml

    from bgpd.config.model import parse_config

    data = yaml.safe_load(examples()["kroute"])
    data["cluster"] = {"nodes": [{"name": "kr-n1", "ip": "172.31.0.1"}]}
    data["node"] = {"name": "kr-n1"}
    config = parse_config(data)
    assert [str(p.address) for p in config.bgp.peers] == ["172.31.0.254"]
