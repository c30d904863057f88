"""Render the ExaBGP configuration and environment kroute runs its speaker with.

Pure functions: the same inputs always give the same text, so a restart with an
unchanged config gives exabgp exactly the same file.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bgpd.bgp.peers import Peer
from bgpd.config.peers import read_password

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        f"    run {sys.executable} -m bgpd.bgp.bridge {bridge_socket};",
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
        block.append(f'    description "{peer.name}";')
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
        block.append(f'    md5-password "{read_password(peer.password_file)}";')
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
