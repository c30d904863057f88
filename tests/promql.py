"""PromQL expressions of the Grafana dashboard: syntax checked by Prometheus's own
parser (`promtool check rules` on one recording rule per expression), metric names
pulled out for checking against a real daemon's /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*"}
KEYWORDS = {
    # aggregations, functions and keywords the dashboard uses (an unknown word is taken
    # for a metric name and must then exist: the test errs on the strict side)
    *("sum", "count", "max", "min", "avg", "by", "without", "on", "ignoring"),
    *("group_left", "group_right", "or", "and", "unless", "bool", "offset"),
    *("rate", "increase", "histogram_quantile", "time", "vector", "label_values"),
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def expressions(dashboard: Path) -> list[str]:
    """Every PromQL expression of the dashboard (panels and template variables),
    with Grafana's variables replaced by values Prometheus accepts."""
    document: dict[str, Any] = json.loads(dashboard.read_text())
    found = [t["expr"] for panel in document["panels"] for t in panel.get("targets", [])]
    for variable in document["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query["query"])
    substituted = []
    for expr in found:
        text = expr
        for name, value in GRAFANA_VARIABLES.items():
            text = text.replace(name, value)
        substituted.append(text)
    return substituted


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers outside strings, label matchers,
    range selectors and grouping clauses, that are not functions or keywords."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _CLAUSE.sub("", text)
    text = re.sub(r"label_values\(([a-zA-Z_:][\w:]*)\s*,\s*\w+\)", r"\1", text)
    return {word for word in _IDENT.findall(text) if word not in KEYWORDS}


def check_syntax(exprs: list[str], workdir: Path) -> str:
    """promtool's verdict on every expression ("" when all parse)."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: scripts/setup installs prometheus"
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": re.sub(r"label_values\((\w+),.*\)", r"\1", e)}
        for i, e in enumerate(exprs)
    ]
    path = workdir / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    return "" if done.returncode == 0 else done.stdout + done.stderr
