"""config/kubernetes/ validated offline: built-in kinds against the Kubernetes 1.33
schemas (kubernetes-validate, strict: unknown fields are errors), kroute's own kinds
against their CRD's openAPIV3Schema (jsonschema); and the properties the install
relies on (least privilege, no privileged pod, the config file passing check-config)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bgpd.config.model import parse_config
from bgpd.kube.lease import LeaseElector

K8S_VERSION = "1.33.0"
ROOT = Path(__file__).resolve().parents[2] / "config" / "kubernetes"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(ROOT.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


DOCS = documents()


def crd_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for _, doc in DOCS:
        if doc["kind"] == "CustomResourceDefinition":
            version = doc["spec"]["versions"][0]
            out[doc["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for _, d in DOCS if d["kind"] == kind and name in (None, d["metadata"]["name"]))


@pytest.mark.parametrize(("where", "doc"), DOCS, ids=[w for w, _ in DOCS])
def test_every_manifest_is_valid(where: str, doc: dict[str, Any]) -> None:
    schemas = crd_schemas()
    if doc["kind"] in schemas:
        jsonschema.validate(doc, schemas[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_crd_schema_refuses_what_kroute_would_refuse() -> None:
    schema = crd_schemas()["LoadBalancerIPPool"]
    bad = {"apiVersion": "kroute.io/v1alpha1", "kind": "LoadBalancerIPPool",
           "metadata": {"name": "x"}, "spec": {"blocks": [{"start": "10.0.0.1"}]}}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**by_kind("DaemonSet"), "spez": {}}, K8S_VERSION, strict=True)


def test_agent_reads_only_and_operator_writes_only_statuses_and_its_lease() -> None:
    agent = by_kind("ClusterRole", "kroute-agent")
    assert {v for rule in agent["rules"] for v in rule["verbs"]} <= {"get", "list", "watch"}
    operator = by_kind("ClusterRole", "kroute-operator")
    for rule in operator["rules"]:
        writes = set(rule["verbs"]) - {"get", "list", "watch"}
        assert not writes or all(r.endswith("/status") for r in rule["resources"]), rule
    lease = by_kind("Role", "kroute-operator-lease")
    named = [r for r in lease["rules"] if r.get("resourceNames")]
    assert named[0]["resourceNames"] == ["kroute-operator"]
    assert [r["verbs"] for r in lease["rules"] if not r.get("resourceNames")] == [["create"]]
    deployment = by_kind("Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "operator"
    elector = LeaseElector.__init__.__kwdefaults__ or {}
    assert elector["retry"] < elector["renew_deadline"] < elector["duration"]


def test_daemonset_runs_unprivileged_with_the_capabilities_it_needs() -> None:
    spec = by_kind("DaemonSet")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    assert [c["name"] for c in spec["initContainers"]] == ["install-cni"]
    (agent,) = spec["containers"]
    security = agent["securityContext"]
    assert security["privileged"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert {"NET_ADMIN", "NET_RAW", "BPF", "SYS_ADMIN"} <= set(security["capabilities"]["add"])
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    assert {"/sys/fs/bpf", "/lib/modules", "/etc/kroute"} <= mounts
    config = yaml.safe_load(by_kind("ConfigMap")["data"]["kroute.yaml"])
    port = int(config["status"]["listen"].rsplit(":", 1)[1])
    assert agent["livenessProbe"]["httpGet"]["port"] == port == agent["readinessProbe"][
        "httpGet"]["port"]  # fmt: skip
    assert agent["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_configmap_config_passes_check_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "worker-1")
    data = yaml.safe_load(by_kind("ConfigMap")["data"]["kroute.yaml"])
    data["node"] = {"ip": "10.0.0.1"}  # what the host gives at run time
    config = parse_config(data)
    assert config.node.name == "worker-1"
    assert config.cluster.source == "kubernetes" and config.ipam.mode == "kubernetes"


def test_containerfile_copies_what_exists_and_install_step_is_executable() -> None:
    repo = ROOT.parents[1]
    lines = (repo / "Containerfile").read_text().splitlines()
    sources = [p for line in lines if line.startswith("COPY ") for p in line.split()[1:-1]]
    assert sources and all((repo / p).exists() for p in sources), sources
    # the image installs a wheel (not editable): every package must be listed
    listed = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {str(p.parent.relative_to(repo)).replace("/", ".")
             for top in listed["packages"] if "." not in top
             for p in (repo / top).rglob("__init__.py")}  # fmt: skip
    assert found <= set(listed["packages"]), found - set(listed["packages"])
    assert (ROOT / "install-cni.sh").stat().st_mode & 0o111
    assert "/opt/kroute/install-cni.sh" in by_kind("DaemonSet")["spec"]["template"]["spec"][
        "initContainers"][0]["command"]  # fmt: skip
