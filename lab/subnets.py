"""Labs on two subnets: the lab's /24 split into two /25 LANs joined by a router namespace.

With `--subnets 2` odd-numbered nodes sit on subnet A (172.31.K.0/25, node I at .I) and
even-numbered ones on subnet B (172.31.K.128/25, node I at .128+I); etcd (.253) is on B.
The router `NAME-rt` (.126 on A, .252 on B) forwards between them and knows no pod
routes, so pods on different subnets only reach each other through kroute's VXLAN
overlay (`routing.overlay: crossSubnet` or `always`). Pure address arithmetic.
"""

from __future__ import annotations

import ipaddress

SUBNET_COUNTS = (1, 2)
OVERLAYS = ("never", "crossSubnet", "always")
HALF = 25
ROUTER_HOSTS = (126, 252)  # the router's last octet on subnet A, on subnet B
BRIDGES = ("br0", "br1")


def node_host(i: int, subnets: int) -> int:
    """The last octet of node I's underlay address."""
    return 128 + i if subnets == 2 and i % 2 == 0 else i


def side(ip: str, subnets: int) -> int:
    """0 for subnet A (the whole /24 with one subnet), 1 for subnet B."""
    return int(subnets == 2 and int(ip.rsplit(".", 1)[1]) >= 128)


def prefix_len(subnets: int) -> int:
    return HALF if subnets == 2 else 24


def own_subnet(lab_subnet: str, ip: str, subnets: int) -> str:
    """The LAN subnet `ip` is on."""
    net = ipaddress.ip_network(f"{ip}/{prefix_len(subnets)}", strict=False)
    return str(net) if subnets == 2 else lab_subnet


def router_ip(index: int, which: int) -> str:
    return f"172.31.{index}.{ROUTER_HOSTS[which]}"


def other_half(index: int, ip: str) -> tuple[str, str]:
    """(the other subnet, the router's address on ip's subnet): the route a node on
    `ip` needs to reach the other side."""
    mine = side(ip, 2)
    other = f"172.31.{index}.{128 * (1 - mine)}/{HALF}"
    return other, router_ip(index, mine)
