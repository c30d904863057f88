"""kroute-cni's protocol side: environment and stdin parsing, error objects, VERSION."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bgpd.cni import run
from datapath.cni_spec import (
    SUPPORTED_VERSIONS,
    CniError,
    host_ifname,
    parse_netconf,
    parse_request,
)

CONF = json.dumps({"cniVersion": "1.0.0", "name": "kroute", "type": "kroute-cni"})


def env(**over: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/var/run/netns/pod",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v != "-"}  # "-" drops the variable


def error_of(environ: dict[str, str], stdin: str = CONF) -> dict[str, Any]:
    """Run the plugin (no store or netlink is reached) and return its error object."""
    code, out = run(environ, stdin)
    assert code != 0
    doc: dict[str, Any] = json.loads(out)
    assert set(doc) == {"cniVersion", "code", "msg", "details"}
    return doc


def test_request_is_parsed() -> None:
    req = parse_request(env(CNI_ARGS="K8S_POD_NAME=web;IgnoreUnknown=1"), CONF)
    assert (req.command, req.container_id, req.ifname) == ("ADD", "abc123", "eth0")
    assert req.netns == "/var/run/netns/pod"
    assert req.args == {"K8S_POD_NAME": "web", "IgnoreUnknown": "1"}
    assert req.conf.kroute_config == "/etc/kroute/kroute.yaml"
    assert req.conf.mtu == 1500


def test_netconf_fields() -> None:
    conf = parse_netconf(
        json.dumps(
            {"cniVersion": "0.4.0", "name": "n", "kroute": {"config": "/x.yaml"}, "mtu": 1450}
        )
    )
    assert (conf.cni_version, conf.kroute_config, conf.mtu) == ("0.4.0", "/x.yaml", 1450)


@pytest.mark.parametrize(
    ("environ", "code", "needle"),
    [
        (env(CNI_COMMAND="-"), 4, "CNI_COMMAND is not set"),
        (env(CNI_COMMAND="FROB"), 4, "'FROB' is not supported"),
        (env(CNI_CONTAINERID="-"), 4, "CNI_CONTAINERID"),
        (env(CNI_IFNAME="-", CNI_NETNS="-"), 4, "CNI_IFNAME, CNI_NETNS not set"),
        (env(CNI_CONTAINERID="../x"), 4, "CNI_CONTAINERID is invalid"),
        (env(CNI_CONTAINERID="a/b"), 4, "CNI_CONTAINERID is invalid"),
        (env(CNI_CONTAINERID="abc\n"), 4, "CNI_CONTAINERID is invalid"),
        (env(CNI_IFNAME="eth0123456789abc"), 4, "CNI_IFNAME is invalid"),
        (env(CNI_IFNAME="et h0"), 4, "CNI_IFNAME is invalid"),
        (env(CNI_IFNAME="."), 4, "CNI_IFNAME is invalid"),
        (env(CNI_IFNAME=".."), 4, "CNI_IFNAME is invalid"),
        (env(CNI_NETNS="relative/ns"), 4, "CNI_NETNS"),
        (env(CNI_ARGS="novalue"), 4, "CNI_ARGS"),
    ],
)
def test_bad_environment_is_code_4(environ: dict[str, str], code: int, needle: str) -> None:
    doc = error_of(environ)
    assert doc["code"] == code
    assert needle in doc["msg"] + doc["details"]


def test_del_needs_no_netns() -> None:
    req = parse_request(env(CNI_COMMAND="DEL", CNI_NETNS="-"), CONF)
    assert req.netns == ""


@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        ("{not json", 6),
        ("[1, 2]", 6),
        ("", 6),
        (json.dumps({"name": "kroute"}), 7),
        (json.dumps({"cniVersion": "9.9.9"}), 1),
        (json.dumps({"cniVersion": "1.0.0", "mtu": 20}), 7),
        (json.dumps({"cniVersion": "1.0.0", "mtu": "1450"}), 7),
        (json.dumps({"cniVersion": "1.0.0", "kroute": "/etc/kroute.yaml"}), 7),
    ],
)
def test_bad_network_config(stdin: str, code: int) -> None:
    assert error_of(env(), stdin)["code"] == code


def test_error_carries_config_version() -> None:
    stdin = json.dumps({"cniVersion": "0.4.0", "mtu": 1})
    assert error_of(env(), stdin)["cniVersion"] == "1.0.0"  # unparsed config: the default
    assert CniError(7, "m", "d").to_json("0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 7,
        "msg": "m",
        "details": "d",
    }


def test_version() -> None:
    code, out = run({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": "1.0.0"}))
    assert code == 0
    doc = json.loads(out)
    assert doc["cniVersion"] == "1.0.0"
    assert {"1.0.0", "0.4.0"} <= set(doc["supportedVersions"])
    assert list(SUPPORTED_VERSIONS) == doc["supportedVersions"]


def test_host_ifname_is_stable_short_and_distinct() -> None:
    name = host_ifname("abc123", "eth0")
    assert name == host_ifname("abc123", "eth0")
    assert name.startswith("kr") and len(name) == 13 and len(name) <= 15
    assert name != host_ifname("abc123", "eth1")
    assert name != host_ifname("abc124", "eth0")
