"""Typed configuration: YAML with camelCase keys, validated before anything runs.

`load_config(path)` returns a frozen `Config` or raises `ConfigError` whose `errors`
hold one line per problem, each naming the field path and what to set. Unknown keys
are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bgpd.config.datapath import DatapathConfig, RoutingConfig, datapath_errors
from bgpd.config.logging_setup import LogConfig
from bgpd.config.peers import PeerConfig
from bgpd.config.stores import EtcdConfig, IpamConfig, KubernetesConfig, LoadBalancerConfig
from bgpd.config.types import CIDR, Model, Network
from common.errors import ConfigError
from ipam.allocator import ClusterPool

RANGES = {
    "bgp.asn": "1-4294967295",
    "bgp.holdTime": "0 or 3-65535 (seconds)",
    "bgp.listenPort": "1-65535",
    "bgp.gracefulRestart.restartTime": "1-4095 (seconds)",
    "bgp.gracefulRestart.stalePathTime": "1-3600 (seconds)",
}
"""Fields whose bound errors read better as one range than as pydantic's two messages."""

DEFAULT_SOCKET = "/run/kroute/kroute.sock"
DEFAULT_RUN_DIR = "/run/kroute"
RUN_DIR_CHARS = re.compile(r"/[A-Za-z0-9._/+@:=-]*")  # it goes into exabgp.conf as a token
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the NUL; runDir holds exabgp.sock


class NodeConfig(Model):
    """This node. Empty fields are derived from the host at load time."""

    name: str = ""
    ip: ipaddress.IPv4Address | None = None
    router_id: ipaddress.IPv4Address | None = Field(default=None, alias="routerId")


class GracefulRestartConfig(Model):
    enabled: bool = True
    restart_time: int = Field(default=120, ge=1, le=4095, strict=True)
    stale_path_time: int = Field(default=360, ge=1, le=3600, strict=True)
    """FRR's `bgp graceful-restart stalepath-time`: how long a returned peer has to send
    End-of-RIB before the routes it did not send again are dropped."""


class BgpConfig(Model):
    asn: int = Field(ge=1, le=4294967295, strict=True)
    hold_time: int = Field(default=90, ge=0, le=65535, strict=True)
    listen_port: int = Field(default=179, ge=1, le=65535, strict=True)
    graceful_restart: GracefulRestartConfig = GracefulRestartConfig()
    mesh: Literal["full", "none"] = "full"
    advertise_cluster_ips: bool = Field(default=False, alias="advertiseClusterIPs")
    peers: tuple[PeerConfig, ...] = ()

    @model_validator(mode="after")
    def _peers_consistent(self) -> BgpConfig:
        errors: list[str] = []
        seen: dict[object, int] = {}
        for i, peer in enumerate(self.peers):
            where = f"bgp.peers[{i}]"
            if peer.address in seen:
                errors.append(
                    f"{where}.address: {peer.address} already used by "
                    f"bgp.peers[{seen[peer.address]}]; list each peer once"
                )
            seen.setdefault(peer.address, i)
            if peer.ebgp_multihop is not None and peer.asn == self.asn:
                errors.append(
                    f"{where}.ebgpMultihop: only for eBGP peers; {peer.address} is iBGP "
                    f"(AS {peer.asn}); remove it"
                )
            if peer.route_reflector_client and peer.asn != self.asn:
                errors.append(
                    f"{where}.routeReflectorClient: only iBGP peers can be reflector clients; "
                    f"{peer.address} is AS {peer.asn}"
                )
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @field_validator("hold_time")
    @classmethod
    def _hold_time(cls, value: int) -> int:
        if value in (1, 2):
            raise ValueError("must be 0 (no keepalives) or 3-65535 seconds (RFC 4271)")
        return value


class ClusterNode(Model):
    name: str = Field(min_length=1)
    ip: ipaddress.IPv4Address
    pod_cidrs: tuple[CIDR, ...] = Field(default=(), alias="podCIDRs")
    route_reflector_cluster_id: ipaddress.IPv4Address | None = None


class ClusterConfig(Model):
    source: Literal["static", "etcd", "kubernetes"] = "static"
    lease_ttl: int = Field(default=10, ge=2, le=3600, strict=True, alias="leaseTTL")
    nodes: tuple[ClusterNode, ...] = ()
    service_cidrs: tuple[CIDR, ...] = Field(default=(), alias="serviceCIDRs")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        errors: list[str] = []
        seen_names: dict[str, int] = {}
        seen_ips: dict[ipaddress.IPv4Address, int] = {}
        owners: list[tuple[Network, int]] = []
        for i, node in enumerate(self.nodes):
            where = f"cluster.nodes[{i}]"
            if node.name in seen_names:
                errors.append(
                    f"{where}.name: {node.name!r} already used by "
                    f"cluster.nodes[{seen_names[node.name]}]; node names must be unique"
                )
            seen_names.setdefault(node.name, i)
            if node.ip in seen_ips:
                errors.append(
                    f"{where}.ip: {node.ip} already used by cluster.nodes[{seen_ips[node.ip]}]; "
                    "give every node its own IP"
                )
            seen_ips.setdefault(node.ip, i)
            for j, cidr in enumerate(node.pod_cidrs):
                for other, k in owners:
                    if cidr.version == other.version and cidr.overlaps(other):
                        errors.append(
                            f"{where}.podCIDRs[{j}]: {cidr} overlaps {other} of "
                            f"{self.nodes[k].name!r}; pod CIDRs must not overlap"
                        )
                owners.append((cidr, i))
        if errors:
            raise ValueError("\n".join(errors))
        return self


class StatusConfig(Model):
    listen: str = "127.0.0.1:9479"
    socket: str = DEFAULT_SOCKET

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value


class Config(Model):
    """The whole file. `node` fields are filled in by `load_config`."""

    node: NodeConfig = NodeConfig()
    bgp: BgpConfig
    cluster: ClusterConfig = ClusterConfig()
    status: StatusConfig = StatusConfig()
    run_dir: str = DEFAULT_RUN_DIR
    ipam: IpamConfig = IpamConfig()
    etcd: EtcdConfig | None = None
    load_balancer: LoadBalancerConfig = LoadBalancerConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    routing: RoutingConfig = RoutingConfig()
    datapath: DatapathConfig = DatapathConfig()
    log: LogConfig = LogConfig()

    @field_validator("run_dir")
    @classmethod
    def _run_dir(cls, value: str) -> str:
        if not RUN_DIR_CHARS.fullmatch(value):
            raise ValueError(
                f"{value!r} must be an absolute path of letters, digits and ._/+@:=- only "
                "(it goes into exabgp.conf), for example /run/kroute"
            )
        if len(os.path.join(value, "exabgp.sock").encode()) > SOCKET_PATH_MAX:
            raise ValueError(
                f"{value!r} is too long for the exabgp socket in it (unix socket paths "
                f"are at most {SOCKET_PATH_MAX} bytes); use a shorter path"
            )
        return value

    @model_validator(mode="after")
    def _sources(self) -> Config:
        errors = []
        uses_etcd = self.cluster.source == "etcd" or (
            self.ipam.mode == "cluster-pool" and self.ipam.store == "etcd"
        )
        if uses_etcd and self.etcd is None:
            errors.append("etcd: required by cluster.source or ipam.store etcd; set etcd.endpoints")
        if self.ipam.mode == "cluster-pool":
            pool = self.ipam.cluster_pool
            assert pool is not None
            try:
                ClusterPool(pool.cidrs, pool.mask_size_v4, pool.mask_size_v6)
            except ValueError as exc:
                errors.append(f"ipam.clusterPool.{exc}")
            for i, node in enumerate(self.cluster.nodes):
                if node.pod_cidrs:
                    errors.append(
                        f"cluster.nodes[{i}].podCIDRs: set by ipam.mode cluster-pool; remove it"
                    )
        if self.cluster.source == "etcd":
            if self.ipam.mode != "cluster-pool":
                errors.append(
                    "ipam.mode: cluster.source etcd needs cluster-pool (nodes announce the "
                    "blocks they were given); set ipam.mode: cluster-pool"
                )
            if self.cluster.nodes:
                errors.append(
                    "cluster.nodes: with cluster.source etcd nodes come from etcd; remove it"
                )
        errors.extend(_kubernetes_source_errors(self))
        pool_cidrs = self.ipam.cluster_pool.cidrs if self.ipam.cluster_pool else ()
        pod_cidrs = [*pool_cidrs, *(c for n in self.cluster.nodes for c in n.pod_cidrs)]
        errors += datapath_errors(self.routing, self.datapath, pod_cidrs)
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def self_node(self) -> ClusterNode | None:
        """This node's entry in the cluster list, matched by name."""
        for node in self.cluster.nodes:
            if node.name == self.node.name:
                return node
        return None

    def peers(self) -> tuple[ClusterNode, ...]:
        """Every other cluster node: the iBGP full mesh."""
        return tuple(n for n in self.cluster.nodes if n.name != self.node.name)


def _kubernetes_source_errors(config: Config) -> list[str]:
    kube = config.cluster.source == "kubernetes"
    if config.ipam.mode == "kubernetes" and not kube:
        return ["ipam.mode: kubernetes needs cluster.source: kubernetes; set it"]
    if not kube:
        return []
    if config.ipam.mode != "kubernetes" and config.ipam.store != "kubernetes":
        return [
            "ipam.mode: cluster.source kubernetes needs ipam.mode kubernetes (Node podCIDRs), "
            "or cluster-pool with ipam.store kubernetes"
        ]
    lb = config.load_balancer
    return [
        f"{field}: with cluster.source kubernetes it comes from the API server; remove it"
        for field, value in (
            ("cluster.nodes", config.cluster.nodes),
            ("loadBalancer.pools", lb.pools),
            ("loadBalancer.services", lb.services),
        )
        if value
    ]


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[addr]:port`) and check both parts."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} must be HOST:PORT, for example 127.0.0.1:9479, or empty")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: host must be an IP address, for example 0.0.0.0") from None
    return host, int(port_text)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + part
    return path


def _describe(error: ErrorDetails) -> list[str]:
    loc = tuple(error["loc"])
    path = _field_path(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return [f"{path}: unknown key; remove it or check its spelling"]
    if kind == "missing":
        return [f"{path}: required; set it"]
    message = str(error["msg"]).removeprefix("Value error, ")
    lines = message.splitlines()
    if kind == "value_error" and (not loc or all(line.startswith(f"{path}.") for line in lines)):
        return lines  # a cross-field check that names its fields itself
    if path in RANGES and kind in ("greater_than_equal", "less_than_equal", "int_type"):
        what = "an integer " if kind == "int_type" else ""
        return [f"{path}: must be {what}{RANGES[path]}, got {error.get('input')!r}"]
    return [f"{path}: {message}"]


def parse_config(data: object, *, host_defaults: bool = True) -> Config:
    """Validate already-parsed YAML data; fill in host-derived defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            ["(top level): must be a mapping of keys, for example `bgp: {asn: 64512}`"]
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines: list[str] = []
        for error in exc.errors(include_url=False):
            lines.extend(_describe(error))
        raise ConfigError(lines) from None
    return _with_node_defaults(config) if host_defaults else config


def _with_node_defaults(config: Config) -> Config:
    node = config.node
    # NODE_NAME: the DaemonSet's downward API (the config file is shared by every node)
    name = node.name or os.environ.get("NODE_NAME") or socket.gethostname().split(".")[0]
    listed = next((n for n in config.cluster.nodes if n.name == name), None)
    ip = node.ip or (listed.ip if listed else None) or _default_ipv4()
    if ip is None:
        raise ConfigError(["node.ip: no IPv4 address found on this host; set node.ip"])
    if listed is not None and listed.ip != ip:
        raise ConfigError(
            [
                f"node.ip: {ip} differs from cluster.nodes entry {name!r} ({listed.ip}); "
                "make them agree"
            ]
        )
    router_id = node.router_id or ip
    errors = []
    if config.cluster.nodes and listed is None:
        errors.append(
            f"node.name: {name!r} is not in cluster.nodes; add it there with its podCIDRs "
            "or set node.name to one of them"
        )
    errors += _session_family_errors(config.bgp.peers, ip)
    if errors:
        raise ConfigError(errors)
    new_node = NodeConfig(name=name, ip=ip, routerId=router_id)
    return config.model_copy(update={"node": new_node})


def _session_family_errors(
    peers: tuple[PeerConfig, ...], local: ipaddress.IPv4Address
) -> list[str]:
    """Every session runs from node.ip, and a TCP session has one family at both ends
    (exabgp refuses the whole file otherwise, every session with it)."""
    return [
        f"bgp.peers[{i}].address: {peer.address} is IPv{peer.address.version} but sessions "
        f"run from node.ip {local} (IPv{local.version}); kroute has no IPv6 sessions yet: "
        "peer with the router's IPv4 address"
        for i, peer in enumerate(peers)
        if peer.address.version != local.version
    ]


def _default_ipv4() -> ipaddress.IPv4Address | None:
    """The source address the host would use towards the outside, without sending."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1; connect() on UDP sends nothing
        return ipaddress.IPv4Address(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a config file; every problem in one ConfigError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_config(data)
