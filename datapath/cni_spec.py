"""kroute-cni's protocol side (CNI spec 1.0.0, and 0.3.x/0.4.0 results): the CNI_*
environment and the network config on stdin parsed and validated, error objects with the
spec's codes, and the VERSION and ADD results. Pure: no kernel, no store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.errors import AllocationError, KrouteError
from datapath.cni_net import DEFAULT_MTU, GATEWAY_V4, GATEWAY_V6, PodWiring, Wired
from ipam.allocator import pod_key

SPEC_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
DEFAULT_CONFIG = "/etc/kroute/kroute.yaml"

# The spec's well-known error codes, and kroute's own (100 and up).
E_VERSION, E_UNKNOWN_CONTAINER, E_ENV, E_IO, E_DECODE, E_CONFIG = 1, 3, 4, 5, 6, 7
E_TRY_AGAIN = 11
E_IPAM, E_DATAPATH, E_CHECK = 100, 101, 102


class CniError(KrouteError):
    """A failure reported to the runtime as a CNI error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, version: str) -> dict[str, Any]:
        return {"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details}


@dataclass(frozen=True)
class NetConf:
    """The fields of the network config kroute-cni reads; the rest is ignored."""

    cni_version: str
    name: str
    kroute_config: str = DEFAULT_CONFIG
    mtu: int = DEFAULT_MTU
    prev_result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Request:
    """One invocation: CNI_* environment plus the parsed network config."""

    command: str
    conf: NetConf
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)


def host_ifname(container_id: str, ifname: str) -> str:
    """`kr` + 11 hex digits of sha256(containerID/ifname): stable, unique, 13 chars."""
    return "kr" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:11]


def parse_netconf(text: str) -> NetConf:
    """The network config from stdin; CniError 6 (not JSON) or 1/7 naming the field."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CniError(E_DECODE, "network config on stdin is not JSON", str(exc)) from None
    if not isinstance(doc, dict):
        raise CniError(E_DECODE, "network config on stdin must be a JSON object")
    version = doc.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(E_CONFIG, "network config: cniVersion is missing; set it to 1.0.0")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            E_VERSION,
            f"network config: cniVersion {version} is not supported",
            f"kroute-cni supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    name = doc.get("name", "")
    kroute = doc.get("kroute", {})
    if not isinstance(kroute, dict) or not isinstance(kroute.get("config", ""), str):
        raise CniError(E_CONFIG, 'network config: kroute must be {"config": "/path/kroute.yaml"}')
    mtu = doc.get("mtu", DEFAULT_MTU)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise CniError(E_CONFIG, f"network config: mtu {mtu!r} must be an integer 68-65535")
    prev = doc.get("prevResult")
    return NetConf(
        cni_version=version,
        name=name if isinstance(name, str) else "",
        kroute_config=kroute.get("config") or DEFAULT_CONFIG,
        mtu=mtu,
        prev_result=prev if isinstance(prev, dict) else None,
    )


def _check_names(container_id: str, ifname: str) -> None:
    """ipam.allocator's validators, each field checked alone so the error names it."""
    for var, cid, name in (
        ("CNI_CONTAINERID", container_id, "eth0"),
        ("CNI_IFNAME", "c", ifname),
    ):
        try:
            pod_key(cid, name, 4)
        except AllocationError as exc:
            raise CniError(E_ENV, f"{var} is invalid", str(exc)) from None
    if ifname == ".":  # the kernel refuses it too, but say which field is wrong
        raise CniError(E_ENV, "CNI_IFNAME is invalid", "'.' is not an interface name")


def parse_request(env: Mapping[str, str], stdin: str) -> Request:
    """CNI_* variables and stdin, validated; CniError with the spec's code otherwise."""
    command = env.get("CNI_COMMAND", "")
    if command not in ("ADD", "DEL", "CHECK", "VERSION"):
        raise CniError(
            E_ENV,
            f"CNI_COMMAND {command!r} is not supported" if command else "CNI_COMMAND is not set",
            "use ADD, DEL, CHECK or VERSION",
        )
    if command == "VERSION":
        return Request(command, NetConf(SPEC_VERSION, ""))
    conf = parse_netconf(stdin)
    needed = ["CNI_CONTAINERID", "CNI_IFNAME"] + (["CNI_NETNS"] if command != "DEL" else [])
    missing = [var for var in needed if not env.get(var)]
    if missing:
        raise CniError(E_ENV, f"{', '.join(missing)} not set", f"required for {command}")
    container_id, ifname, netns = (
        env["CNI_CONTAINERID"],
        env["CNI_IFNAME"],
        env.get("CNI_NETNS", ""),
    )
    _check_names(container_id, ifname)
    if netns and not netns.startswith("/"):
        raise CniError(E_ENV, f"CNI_NETNS {netns!r} is invalid", "it must be an absolute path")
    args: dict[str, str] = {}
    for item in filter(None, env.get("CNI_ARGS", "").split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CniError(E_ENV, f"CNI_ARGS item {item!r} is invalid", "use KEY=VALUE;KEY=VALUE")
        args[key] = value
    return Request(command, conf, container_id, netns, ifname, args)


def version_result(conf: NetConf) -> dict[str, Any]:
    return {"cniVersion": conf.cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def build_result(req: Request, wiring: PodWiring, wired: Wired) -> dict[str, Any]:
    """The ADD result: host veth (0), pod interface (1) holding the IPs, default routes."""
    old = req.conf.cni_version != "1.0.0"  # 0.3.x/0.4.0 name the family in each IP
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, str]] = []
    for ip in wiring.addresses:
        gateway = GATEWAY_V4 if ip.version == 4 else GATEWAY_V6
        entry: dict[str, Any] = {
            "address": f"{ip}/{ip.max_prefixlen}",
            "interface": 1,
            "gateway": str(gateway),
        }
        if old:
            entry["version"] = str(ip.version)
        ips.append(entry)
        routes.append({"dst": "0.0.0.0/0" if ip.version == 4 else "::/0", "gw": str(gateway)})
    return {
        "cniVersion": req.conf.cni_version,
        "interfaces": [
            {"name": wiring.host_if, "mac": wired.host_mac},
            {"name": wiring.ifname, "mac": wired.pod_mac, "sandbox": wiring.netns},
        ],
        "ips": ips,
        "routes": routes,
        "dns": {},
    }
