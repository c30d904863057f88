"""Building blocks of the config models: the strict base model and value types."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator
from pydantic.alias_generators import to_camel

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_cidr(value: object) -> Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a CIDR string like 10.244.1.0/24, got {value!r}")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR; write it like 10.244.1.0/24") from None
    raise ValueError(f"{value!r} has host bits set; use {loose}")


CIDR = Annotated[Network, PlainValidator(_parse_cidr), PlainSerializer(str)]


def _parse_community(value: object) -> str:
    parts = str(value).split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isdigit() and int(p) <= 0xFFFF for p in parts):
        raise ValueError(f"{value!r} is not a community; write it as A:B with A, B in 0-65535")
    return f"{int(parts[0])}:{int(parts[1])}"


def _parse_large_community(value: object) -> str:
    parts = str(value).split(":") if isinstance(value, str) else []
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 0xFFFFFFFF for p in parts):
        raise ValueError(
            f"{value!r} is not a large community; write it as A:B:C with each in 0-4294967295"
        )
    return ":".join(str(int(p)) for p in parts)


Community = Annotated[str, PlainValidator(_parse_community)]
LargeCommunity = Annotated[str, PlainValidator(_parse_large_community)]


class Model(BaseModel):
    """camelCase keys, unknown keys refused, immutable once loaded."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)
