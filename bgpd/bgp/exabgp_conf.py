"""Render the ExaBGP configuration and environment kroute runs its speaker with.

Pure functions: the same inputs always give the same text, so a restart with an
unchanged config gives exabgp exactly the same file.

Nothing a user wrote goes into the file raw. exabgp's tokenizer reads line by line,
undoes backslash escapes first and opens or closes a string on either quote, so no
value can be escaped: descriptions keep only plain characters, the MD5 password goes
base64-encoded (`md5-base64 true`), paths must be plain tokens, and the rest are
addresses and integers from validated config.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bgpd.bgp.peers import Peer
from bgpd.config.peers import DESCRIPTION_MAX, check_password, read_password

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_PLAIN = re.compile(r"[^A-Za-z0-9 ._:/@()+,=-]")
_PATH = re.compile(r"[A-Za-z0-9._/+@:=-]+")  # no space or comma: both split a token


@dataclass(frozen=True)
class SpeakerSpec:
    """This node's side of every session."""

    router_id: ipaddress.IPv4Address
    local_address: IPAddress
    asn: int
    hold_time: int
    port: int
    restart_time: int  # advertised to peers whose graceful restart is on
    neighbors: tuple[Peer, ...]


def render_config(spec: SpeakerSpec, bridge_socket: str) -> str:
    """The exabgp.conf text: one API process (the bridge) and one block per neighbor.
    It holds MD5 passwords: the speaker writes it with mode 0600."""
    lines = [
        "process kroute {",
        f"    run {_path(sys.executable, 'the Python interpreter')} -m bgpd.bgp.bridge "
        f"{_path(bridge_socket, 'runDir')};",
        "    encoder json;",
        "}",
    ]
    for peer in spec.neighbors:
        lines.extend(_neighbor_block(spec, peer))
    return "\n".join(lines) + "\n"


def _neighbor_block(spec: SpeakerSpec, peer: Peer) -> Sequence[str]:
    family = "ipv4 unicast" if peer.address.version == 4 else "ipv6 unicast"
    block = [f"neighbor {peer.address} {{"]
    if peer.name:
        block.append(f'    description "{safe_description(peer.name)}";')
    block += [
        f"    router-id {spec.router_id};",
        f"    local-address {spec.local_address};",
        f"    local-as {spec.asn};",
        f"    peer-as {peer.asn};",
        f"    hold-time {peer.hold_time};",
        f"    connect {peer.port};",
        "    manual-eor true;",
    ]
    if peer.passive:
        block.append("    passive true;")
    if peer.multihop is not None:
        block.append(f"    outgoing-ttl {peer.multihop};")
    if peer.password_file is not None:
        block += [f"    md5-password {_password(peer.password_file)};", "    md5-base64 true;"]
    block.append("    capability {")
    if peer.graceful_restart:
        block.append(f"        graceful-restart {spec.restart_time};")
    block += [
        "        route-refresh;",
        "    }",
        "    family {",
        f"        {family};",
        "    }",
        "    api {",
        "        processes [ kroute ];",
        "        neighbor-changes;",
        "        receive { parsed; packets; consolidate; update; open; notification; }",
        "    }",
        "}",
    ]
    return block


def safe_description(text: str) -> str:
    """`text` with every character exabgp could read as syntax replaced by `_`."""
    return _NOT_PLAIN.sub("_", text[:DESCRIPTION_MAX])


def _path(path: str, field: str) -> str:
    if not _PATH.fullmatch(path):
        raise ValueError(
            f"{field}: {path!r} cannot go into exabgp.conf; use a path of letters, digits "
            "and ._/+@:=- only"
        )
    return path


def _password(path: str) -> str:
    """Read again (the file may have changed since load), checked as at load, base64."""
    try:
        secret = read_password(path)
    except OSError as exc:
        raise ValueError(
            f"passwordFile {path}: cannot read: {exc.strerror}; make it readable (mode 0600)"
        ) from None
    check_password(secret, path)
    return base64.b64encode(secret.encode()).decode()


def render_env(spec: SpeakerSpec) -> dict[str, str]:
    """Environment for the exabgp process (see DESIGN.md: why each of these)."""
    return {
        "exabgp_daemon_user": "root",
        "exabgp_daemon_drop": "false",
        "exabgp_daemon_daemonize": "false",
        "exabgp_api_cli": "false",
        "exabgp_api_ack": "true",
        "exabgp_api_terminate": "true",
        "exabgp_api_respawn": "false",
        "exabgp_tcp_bind": str(spec.local_address),
        "exabgp_tcp_port": str(spec.port),
        "exabgp_log_destination": "stdout",
        "exabgp_log_short": "true",
    }
