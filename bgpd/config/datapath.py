"""The `routing:` and `datapath:` sections of the config: how pod traffic leaves a node.

    routing:
      mode: native            # native | vxlan
      overlay: crossSubnet    # vxlan only: never | crossSubnet | always (default always)
      nativeRoutingCIDR: 10.0.0.0/8
      vxlan: {vni: 1, port: 4789}
    datapath:
      bpf: {enabled: true, pinDir: /sys/fs/bpf/kroute}
      masquerade: {enabled: true, interfaces: [eth0], portRange: 61000-65535}

`datapath_errors` refuses combinations that cannot work, each line naming the field and
what to set; `bgpd.config.model.Config` calls it, so a bad file is refused at load and reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from bgpd.config.types import CIDR, Model, Network

DEFAULT_PIN_DIR = "/sys/fs/bpf/kroute"
DEFAULT_PORT_RANGE = "61000-65535"  # above Linux's local port range (32768-60999)
IFNAME_MAX = 15


class VxlanConfig(Model):
    vni: int = Field(default=1, ge=1, le=16777215, strict=True)
    port: int = Field(default=4789, ge=1, le=65535, strict=True)  # IANA's VXLAN port


class RoutingConfig(Model):
    """`native`: pod CIDRs are routed by the underlay (BGP). `vxlan`: next hops the
    `overlay` setting names go through a VXLAN device kroute keeps."""

    mode: Literal["native", "vxlan"] = "native"
    overlay: Literal["never", "crossSubnet", "always"] | None = None
    native_routing_cidr: CIDR | None = Field(default=None, alias="nativeRoutingCIDR")
    vxlan: VxlanConfig | None = None

    @property
    def effective_overlay(self) -> Literal["never", "crossSubnet", "always"]:
        """The overlay in force: `never` in native mode, `always` when vxlan leaves it unset."""
        if self.mode == "native":
            return "never"
        return self.overlay or "always"


class BpfConfig(Model):
    """kroute's tc programs (datapath/bpf). Off: kernel forwarding (ip_forward=1)."""

    enabled: bool = False
    pin_dir: str = DEFAULT_PIN_DIR

    @field_validator("pin_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path on bpffs, e.g. {DEFAULT_PIN_DIR}")
        return value.rstrip("/") or "/"


class NatTimeouts(Model):
    """Seconds a NAT entry lives without traffic."""

    tcp: int = Field(default=7440, ge=1, le=86400, strict=True)
    udp: int = Field(default=60, ge=1, le=86400, strict=True)
    icmp: int = Field(default=30, ge=1, le=86400, strict=True)


def parse_port_range(value: str) -> tuple[int, int]:
    """`"A-B"` -> (A, B), 1 <= A <= B <= 65535; ValueError saying how to write it."""
    first, sep, last = value.partition("-")
    if not (sep and first.strip().isdigit() and last.strip().isdigit()):
        raise ValueError(f"{value!r} must be FIRST-LAST, for example {DEFAULT_PORT_RANGE}")
    low, high = int(first), int(last)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{value!r}: need 1 <= FIRST <= LAST <= 65535")
    return low, high


class MasqueradeConfig(Model):
    """Pod traffic to destinations outside `routing.nativeRoutingCIDR` leaves with the
    node's IP, on `interfaces` (empty: the node's underlay device)."""

    enabled: bool = False
    interfaces: tuple[str, ...] = ()
    port_range: str = DEFAULT_PORT_RANGE
    max_entries: int = Field(default=65536, ge=256, le=4194304, strict=True)
    timeouts: NatTimeouts = NatTimeouts()

    @field_validator("port_range")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_port_range(value)
        return value

    @field_validator("interfaces")
    @classmethod
    def _ifnames(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or len(name) > IFNAME_MAX or "/" in name or name.strip() != name:
                raise ValueError(f"{name!r} is not an interface name (1-15 chars, no '/')")
        return value

    @property
    def ports(self) -> tuple[int, int]:
        return parse_port_range(self.port_range)


class DatapathConfig(Model):
    bpf: BpfConfig = BpfConfig()
    masquerade: MasqueradeConfig = MasqueradeConfig()


def datapath_errors(
    routing: RoutingConfig, datapath: DatapathConfig, pod_cidrs: Sequence[Network]
) -> list[str]:
    """Impossible combinations of routing, datapath and the pod CIDRs (pool or static),
    one line each naming the field and what to set."""
    errors: list[str] = []
    if routing.mode == "native":
        if routing.overlay not in (None, "never"):
            errors.append(
                f"routing.overlay: {routing.overlay} needs routing.mode: vxlan; set "
                "routing.mode: vxlan or remove routing.overlay"
            )
        if routing.vxlan is not None:
            errors.append(
                "routing.vxlan: only for routing.mode: vxlan; remove it or set routing.mode: vxlan"
            )
    native = routing.native_routing_cidr
    if datapath.masquerade.enabled and native is None and routing.mode == "native":
        errors.append(
            "datapath.masquerade.enabled: in native routing mode masquerading needs "
            "routing.nativeRoutingCIDR (the network pods reach without NAT, e.g. the pod "
            "range 10.0.0.0/8); set it, or disable masquerade"
        )
    if native is not None:
        if native.version != 4:
            errors.append(
                f"routing.nativeRoutingCIDR: {native} is IPv6; kroute's datapath is IPv4 "
                "only: give an IPv4 CIDR"
            )
        for cidr in pod_cidrs:
            if cidr.version == 4 and native.version == 4 and not cidr.subnet_of(native):
                errors.append(
                    f"routing.nativeRoutingCIDR: {native} does not contain the pod CIDR "
                    f"{cidr}, so pod-to-pod traffic would be masqueraded; widen it to "
                    f"cover {cidr}"
                )
    return errors
