"""The upstream-router configs docs/upstream-peering.md shows: rendered by the same code,
from the same plan, as `kroute lab up --upstream bird|frr` (which the integration and e2e
tests run), so the documentation is what is tested; tests/unit/test_upstream_peering_doc.py
compares them."""

from __future__ import annotations

import yaml

from lab import upstream
from lab.plan import plan_lab
from lab.render import render_config
from lab.routers.bird import render_bird
from lab.routers.frr import render_bgpd


def examples() -> dict[str, str]:
    """`kroute`: a node's `bgp` section; `bird`: bird.conf; `frr`: FRR's bgpd.conf."""
    found = {}
    for kind, render in (("bird", render_bird), ("frr", render_bgpd)):
        plan = plan_lab("kr", 0, 3, upstream=kind)
        router = upstream.make(plan, [])
        assert router is not None
        found[kind] = render(router.spec)
    node_config = yaml.safe_load(render_config(plan, plan.nodes[0]))
    found["kroute"] = yaml.safe_dump({"bgp": node_config["bgp"]}, sort_keys=False)
    return found


if __name__ == "__main__":
    for name, text in examples().items():
        print(f"<!-- upstream-example: {name} -->\n{text}")
