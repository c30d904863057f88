"""What operators see of a real daemon (real exabgp, an MD5 eBGP session, cluster-pool
IPAM, a LoadBalancer pool): /metrics passes `promtool check metrics` with nothing to
say, every metric the Grafana dashboard and docs/operations.md name exists, and the MD5
password shows up nowhere: logs (text and JSON), status, routes, metrics, CLI output
in every format, refused reloads and check-config errors. The TCP listener serves the
CLI's `--address` and refuses every POST."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bgpd.api.client import request
from tests.kroute_node import NODE_IP, Injector, node_with_injectors, wait_until
from tests.promql import check_syntax, expressions, metric_names
from tests.unit.test_metrics import promtool_check

pytestmark = [pytest.mark.netns, pytest.mark.exabgp]

ROOT = Path(__file__).resolve().parents[2]
EBGP = "10.88.0.3"
LB_POOL = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/29"}]}
LB_SERVICE = {"namespace": "web", "name": "www", "nodes": ["n1"]}
LISTEN = f"{NODE_IP}:9479"


def configure(secret_file: Path) -> Any:
    def edit(config: dict[str, Any], workdir: Path) -> None:
        config["cluster"]["nodes"] = [{"name": "n1", "ip": NODE_IP}]
        config["ipam"] = {
            "mode": "cluster-pool",
            "clusterPool": {"cidrs": ["10.250.0.0/16"]},
            "file": str(workdir / "ipam.json"),
        }
        config["loadBalancer"] = {"pools": [LB_POOL], "services": [LB_SERVICE]}
        config["bgp"]["peers"][0]["passwordFile"] = str(secret_file)
        config["log"] = {"format": "json"}
        config["status"]["listen"] = LISTEN

    return edit


def kroute(*argv: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    enter = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    return subprocess.run(
        [*enter, sys.executable, "-m", "bgpd.cli", *argv],
        capture_output=True,
        text=True,
        check=False,
    )


def scrape(socket: str) -> str:
    status, body = request(socket, "/metrics")
    assert status == 200
    return body.decode()


def names_in(text: str) -> set[str]:
    """Family names and sample names (counters' _total, histograms' _bucket...)."""
    found = set()
    for family in text_string_to_metric_families(text):
        found.add(family.name)
        if family.type == "counter":  # its samples are NAME_total, also when it has none
            found.add(family.name + "_total")
        found.update(sample.name for sample in family.samples)
    return found


def documented_metrics() -> set[str]:
    page = (ROOT / "docs" / "operations.md").read_text()
    section = page.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(kroute_[a-z0-9_]+)`", section))


def test_metrics_dashboard_and_no_password_anywhere(tmp_path: Path) -> None:
    secret = "kr-md5-" + tmp_path.name[-8:]
    secret_file = tmp_path / "peer.md5"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    routes = (f"203.0.113.0/24 next-hop {EBGP}", f"192.0.2.0/24 next-hop {EBGP}")  # 2nd refused
    injector = Injector(EBGP, 65099, routes, md5=secret)
    peers = [{"address": EBGP, "asn": 65099, "import": {"allow": ["203.0.113.0/24"]}}]
    with node_with_injectors([injector], peers, edit=configure(secret_file)) as node:
        wait_until(lambda: node.peer(EBGP)["state"] == "established", 60, "the MD5 session")
        wait_until(lambda: "203.0.113.0/24" in node.kernel(), 30, "the learned route")
        wait_until(lambda: node.status()["ipam"]["usage"] != [], 30, "IPAM usage read")
        metrics = scrape(node.socket)

        promtool_check(metrics)  # exit 0 and not a word of output

        present = names_in(metrics)
        queries = expressions(ROOT / "config" / "grafana-dashboard.json")
        assert check_syntax(queries, tmp_path) == ""
        queried = set().union(*(metric_names(q) for q in queries))
        assert len(queried) > 20
        assert queried - present == set(), "the dashboard queries metrics kroute lacks"
        documented = documented_metrics()
        assert documented - present == set(), "docs/operations.md lists metrics kroute lacks"
        families = {f.name for f in text_string_to_metric_families(metrics)}
        undocumented = {name for name in families if not {name, name + "_total"} & documented}
        assert undocumented == set(), "metrics missing from the list in docs/operations.md"

        shown = [metrics, json.dumps(node.status())]
        for endpoint in ("/routes", "/livez?verbose", "/readyz?verbose", "/pools", "/ipam"):
            shown.append(request(node.socket, endpoint)[1].decode())
        for command in ("status", "peers", "routes"):
            for fmt in ("table", "json", "yaml"):
                done_cli = kroute(command, "-o", fmt, "--socket", node.socket)
                assert done_cli.returncode == 0, done_cli.stderr
                shown.append(done_cli.stdout + done_cli.stderr)

        # another machine's view: the TCP listener reads, and refuses every change
        remote = kroute("peers", "-o", "yaml", "--address", LISTEN, netns=node.node_ns)
        assert remote.returncode == 0, remote.stderr
        assert yaml.safe_load(remote.stdout)["peers"][0]["state"] == "established"
        for path in ("/drain?wait=0", "/reload", "/undrain"):
            post = subprocess.run(
                ["nsenter", f"--net=/var/run/netns/{node.node_ns}", "curl", "-s", "-o",
                 "/dev/null", "-w", "%{http_code}", "-X", "POST", f"http://{LISTEN}{path}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert post.stdout == "405", path
        assert node.status()["drain"] == "none"
        shown.append(remote.stdout)

        config_path = node.workdir / "kroute.yaml"
        good = config_path.read_text()
        bad: dict[str, Any] = yaml.safe_load(good)
        bad["bgp"]["peers"][0]["password"] = secret  # a user's mistake: inline password
        bad["bgp"]["peers"][0]["asn"] = 0
        config_path.write_text(yaml.safe_dump(bad))
        refused = kroute("reload", "--socket", node.socket)
        assert refused.returncode == 1
        assert "bgp.peers[0].password: unknown key" in refused.stderr
        checked = kroute("check-config", str(config_path))
        assert checked.returncode == 2
        shown += [refused.stdout + refused.stderr, checked.stdout + checked.stderr]
        config_path.write_text(good)

        log = (node.workdir / "kroute.log").read_text()
        events = [json.loads(line) for line in log.splitlines()]  # JSON logs, one object a line
        assert any(e.get("event") == "config-refused" for e in events)
        assert all(e.get("event") or e.get("msg") for e in events)
        shown += [log, (node.workdir / "exabgp.log").read_text()]
        leaks = [text[:200] for text in shown if secret in text]
        assert leaks == []
