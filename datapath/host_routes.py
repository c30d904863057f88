"""The node's own IPv4 main-table unicast routes (every route but kroute's), read with one
raw netlink dump.

The datapath reconciler looks at them on every reconcile. pyroute2 decodes each message
into objects, which with an upstream's 10,000 BGP routes in the table was most of a
reconcile's time; here kroute's routes (proto 186) are skipped on their rtmsg header,
before any attribute is read.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass

from common.errors import DatapathError
from datapath.netlink import NETLINK_GET_STRICT_CHK, SOL_NETLINK, open_route_socket
from datapath.netlink_codec import (
    HDR,
    I32,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RT_TABLE_MAIN,
    RTA,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_TABLE,
    RTM,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RTN_UNICAST,
    U32,
    attributes,
    error_text,
    messages,
    parse_multipath,
)
from datapath.routes import RTPROT_BGP

ATTEMPTS = 5  # dumps the kernel interrupts (the table changed meanwhile) are read again


@dataclass(frozen=True, slots=True)
class HostRoute:
    prefix: ipaddress.IPv4Network
    proto: int
    scope: int
    oif: int  # 0 for a multipath route
    gateways: tuple[ipaddress.IPv4Address, ...]


def dump_host_routes(netns: str | None = None) -> list[HostRoute]:
    """Every IPv4 unicast route of the main table that kroute did not install."""
    sock = open_route_socket(netns)
    try:
        with contextlib.suppress(OSError):  # the kernel keeps only the main table
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))
        sock.settimeout(10.0)
        for attempt in range(1, ATTEMPTS + 1):
            routes, interrupted = _dump(sock, attempt)
            if not interrupted:
                return routes
    except OSError as exc:
        raise DatapathError(f"IPv4 route dump failed ({exc}); check permissions") from exc
    finally:
        sock.close()
    raise DatapathError(
        "IPv4 route dump kept being interrupted by concurrent changes; "
        "it is read again on the next reconcile"
    )


def _dump(sock: socket.socket, seq: int) -> tuple[list[HostRoute], bool]:
    req = HDR.pack(36, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    req += RTM.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0)
    req += RTA.pack(8, RTA_TABLE) + U32.pack(RT_TABLE_MAIN)
    sock.sendall(req)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    routes: list[HostRoute] = []
    interrupted = False
    while True:
        n = sock.recv_into(view)
        for mtype, mflags, mseq, off, end in messages(buf, n):
            if mseq != seq:
                continue
            interrupted |= bool(mflags & NLM_F_DUMP_INTR)
            if mtype == NLMSG_DONE:
                return routes, interrupted
            if mtype == NLMSG_ERROR:
                code = -I32.unpack_from(buf, off)[0]
                raise DatapathError(
                    f"IPv4 route dump refused: {error_text(buf, mflags, off, end, code)}"
                )
            if mtype == RTM_NEWROUTE:
                route = _parse(buf, off, end)
                if route is not None:
                    routes.append(route)


def _parse(buf: bytearray, off: int, end: int) -> HostRoute | None:
    _fam, plen, _slen, _tos, table, proto, scope, rtype, _flags = RTM.unpack_from(buf, off)
    if proto == RTPROT_BGP or rtype != RTN_UNICAST:
        return None
    dst = bytes(4)
    oif = 0
    gateways: list[bytes] = []
    for attr, at, stop in attributes(buf, off + RTM.size, end):
        if attr == RTA_DST:
            dst = bytes(buf[at : at + 4])
        elif attr == RTA_OIF:
            oif = U32.unpack_from(buf, at)[0]
        elif attr == RTA_GATEWAY:
            gateways.append(bytes(buf[at : at + 4]))
        elif attr == RTA_TABLE:
            table = U32.unpack_from(buf, at)[0]
        elif attr == RTA_MULTIPATH:
            gateways.extend(gw for gw, _f, _o in parse_multipath(buf, at, stop, 4))
    if table != RT_TABLE_MAIN:
        return None
    return HostRoute(
        ipaddress.IPv4Network((dst, plen)),
        proto,
        scope,
        oif,
        tuple(ipaddress.IPv4Address(gw) for gw in gateways),
    )
