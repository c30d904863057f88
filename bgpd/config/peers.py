"""Config models of explicit BGP peers (`bgp.peers[]`) and their import/export policy."""

from __future__ import annotations

import ipaddress
import unicodedata
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from bgpd.config.types import CIDR, Community, LargeCommunity, Model

PrefixKind = Literal["podCIDR", "serviceClusterIP", "loadBalancerIP"]
ALL_KINDS: tuple[PrefixKind, ...] = ("podCIDR", "serviceClusterIP", "loadBalancerIP")
DESCRIPTION_MAX = 128
PASSWORD_MAX = 80  # bytes: TCP_MD5SIG_MAXKEYLEN, RFC 2385


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
        check_password(secret, value)
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str, info: ValidationInfo) -> str:
        """Shown in logs and status and written to exabgp.conf: one line of text."""
        peer = info.data.get("address", "?")
        control = next((c for c in value if _is_control(c)), None)
        if control is not None:
            raise ValueError(
                f"peer {peer}: contains the control character U+{ord(control):04X}; "
                "write the description as one line of text"
            )
        if len(value) > DESCRIPTION_MAX:
            raise ValueError(
                f"peer {peer}: {len(value)} characters, at most {DESCRIPTION_MAX}; shorten it"
            )
        return value

    @field_validator("hold_time")
    @classmethod
    def _hold_time(cls, value: int | None) -> int | None:
        if value in (1, 2):
            raise ValueError("must be 0 (no keepalives) or 3-65535 seconds (RFC 4271)")
        return value


def _is_control(char: str) -> bool:
    """Control and format characters, line and paragraph separators, lone surrogates."""
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def check_password(secret: str, path: str) -> None:
    """What the kernel and the peers can take; messages name the file, never the secret."""
    if not secret:
        raise ValueError(f"{path} is empty; put the TCP MD5 password in it")
    if any(_is_control(c) for c in secret):
        raise ValueError(
            f"{path}: the password has a line break or control character; write it on one line"
        )
    if len(secret.encode()) > PASSWORD_MAX:
        raise ValueError(f"{path}: the password must be at most {PASSWORD_MAX} bytes (RFC 2385)")


def read_password(path: str) -> str:
    """The TCP MD5 password of a peer; never logged."""
    return Path(path).read_text().strip()
