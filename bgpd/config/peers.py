"""Config models of explicit BGP peers (`bgp.peers[]`) and their import/export policy."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from bgpd.config.types import CIDR, Community, LargeCommunity, Model

PrefixKind = Literal["podCIDR", "serviceClusterIP", "loadBalancerIP"]
ALL_KINDS: tuple[PrefixKind, ...] = ("podCIDR", "serviceClusterIP", "loadBalancerIP")


class ImportPolicy(Model):
    """What is accepted from a peer. Unset `allow` means the default for the peer's kind:
    the cluster's pod CIDRs for iBGP, nothing for eBGP."""

    allow: tuple[CIDR, ...] | None = None
    allow_default_route: bool = False
    max_prefix: int = Field(default=0, ge=0, strict=True)


class ExportPolicy(Model):
    """What is sent to a peer and with which attributes."""

    kinds: tuple[PrefixKind, ...] = ALL_KINDS
    communities: tuple[Community, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    local_preference: int | None = Field(default=None, ge=0, le=4294967295, strict=True)
    med: int | None = Field(default=None, ge=0, le=4294967295, strict=True)
    as_path_prepend: int = Field(default=0, ge=0, le=10, strict=True)


class PeerConfig(Model):
    """One explicit BGP peer: an upstream router (eBGP) or an external reflector (iBGP)."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    asn: int = Field(ge=1, le=4294967295, strict=True)
    port: int = Field(default=179, ge=1, le=65535, strict=True)
    description: str = ""
    password_file: str | None = None
    ebgp_multihop: int | None = Field(default=None, ge=1, le=255, strict=True)
    passive: bool = False
    hold_time: int | None = Field(default=None, ge=0, le=65535, strict=True)
    graceful_restart: bool | None = None
    route_reflector_client: bool = False
    import_: ImportPolicy = Field(default=ImportPolicy(), alias="import")
    export: ExportPolicy = ExportPolicy()

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, value: str | None) -> str | None:
        """Checked at load so a missing file is a config error, not a dead session.
        The message names the file, never its content."""
        if value is None:
            return value
        path = Path(value)
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"cannot read {value}: {exc.strerror}; create it (mode 0600)"
            ) from None
        if not secret:
            raise ValueError(f"{value} is empty; put the TCP MD5 password in it")
        if len(secret) > 80:
            raise ValueError(f"{value}: the password must be at most 80 characters (RFC 2385)")
        return value

    @field_validator("hold_time")
    @classmethod
    def _hold_time(cls, value: int | None) -> int | None:
        if value in (1, 2):
            raise ValueError("must be 0 (no keepalives) or 3-65535 seconds (RFC 4271)")
        return value


def read_password(path: str) -> str:
    """The TCP MD5 password of a peer; never logged."""
    return Path(path).read_text().strip()
