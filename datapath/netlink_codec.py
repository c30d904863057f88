"""rtnetlink route messages for datapath/netlink.py: constants, precompiled `struct`
layouts, and the pure encode/parse of kroute's routes (no sockets here).

Route messages differ only in a few bytes, so each shape is one `struct` packed in one
call; the common IPv4 dump shape is parsed in one unpack too (see netlink.py for why).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator, Mapping

from datapath.routes import RTPROT_BGP, Address, KernelRoute, Network

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x4, 0x10
NLM_F_REPLACE, NLM_F_CREATE, NLM_F_DUMP = 0x100, 0x400, 0x300
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE, RTA_NH_ID = 1, 4, 5, 9, 15, 30
RTNH_F_ONLINK, IFLA_IFNAME = 4, 3
NLMSGERR_ATTR_MSG = 1
RT_TABLE_MAIN, RTN_UNICAST, RTN_BLACKHOLE = 254, 1, 6
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255

HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
RTM = struct.Struct("=BBBBBBBBI")  # rtmsg
RTA = struct.Struct("=HH")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
IFI = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_UPSERT_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
_ALEN = {4: 4, 6: 16}
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def _layout(alen: int, gateway: bool, oif: bool = False) -> struct.Struct:
    """nlmsghdr + rtmsg + RTA_TABLE + RTA_DST [+ RTA_GATEWAY [+ RTA_OIF]], in one call."""
    fmt = f"=IHHIIBBBBBBBBIHHIHH{alen}s" + (f"HH{alen}s" if gateway else "")
    return struct.Struct(fmt + ("HHI" if oif else ""))


# rtmsg + RTA_TABLE + RTA_DST + RTA_GATEWAY + RTA_OIF: how the kernel dumps an IPv4 route.
_FAST4 = struct.Struct("=xB2xBBxBI2xHI2xH4s2xH4s2xHI")
_UNICAST = {v: _layout(n, True) for v, n in _ALEN.items()}
_ONLINK = {v: _layout(n, True, True) for v, n in _ALEN.items()}  # via GW dev X onlink
_SHORT = {v: _layout(n, False) for v, n in _ALEN.items()}  # blackhole and delete


def pad_name(name: str) -> bytes:
    raw = name.encode() + b"\0"
    return raw + bytes(-len(raw) % 4)


def messages(buf: bytearray, n: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, payload offset, end) of each netlink message in buf[:n]."""
    off = 0
    unpack = HDR.unpack_from
    while off + 16 <= n:
        length, mtype, mflags, seq, _pid = unpack(buf, off)
        if length < 16:
            return
        yield mtype, mflags, seq, off + 16, off + length
        off += (length + 3) & ~3


def attributes(buf: bytearray, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, value offset, value end) of each rtattr in buf[pos:end]."""
    unpack = RTA.unpack_from
    while pos + 4 <= end:
        rlen, rtype = unpack(buf, pos)
        if rlen < 4:
            return
        yield rtype, pos + 4, pos + rlen
        pos += (rlen + 3) & ~3


def error_text(buf: bytearray, mflags: int, off: int, end: int, code: int) -> str:
    """Error text from an NLMSG_ERROR, e.g. `Network is unreachable (errno 101): <extack>`."""
    text = f"{os.strerror(code)} (errno {code})"
    if not mflags & NLM_F_ACK_TLVS:
        return text
    inner_len = HDR.unpack_from(buf, off + 4)[0]
    pos = off + 4 + (16 if mflags & NLM_F_CAPPED else (inner_len + 3) & ~3)
    while pos + 4 <= end:
        alen, atype = RTA.unpack_from(buf, pos)
        if alen < 4:
            break
        if atype == NLMSGERR_ATTR_MSG:
            msg = bytes(buf[pos + 4 : pos + alen]).rstrip(b"\0").decode(errors="replace")
            return f"{text}: {msg}" if msg else text
        pos += (alen + 3) & ~3
    return text


def encode_route(route: KernelRoute, delete: bool, seq: int, oif: int = 0) -> bytes:
    """One RTM_NEWROUTE (create-or-replace) or RTM_DELROUTE message for `route`; `oif`
    is the ifindex of `route.dev`, whose next hops then carry RTNH_F_ONLINK."""
    prefix, nhs = route.prefix, route.nexthops
    version = prefix.version
    alen = _ALEN[version]
    if delete:  # type unspec and scope nowhere match any shape; protocol 186 only ours
        mtype, flags, scope, rtype, nhs = RTM_DELROUTE, NLM_F_REQUEST, RT_SCOPE_NOWHERE, 0, ()
    else:
        mtype, flags, scope = RTM_NEWROUTE, _UPSERT_FLAGS, RT_SCOPE_UNIVERSE
        rtype = RTN_UNICAST if nhs else RTN_BLACKHOLE
    nh_flags = RTNH_F_ONLINK if oif and not delete else 0
    head = (
        mtype, flags, seq, 0,
        FAMILY[version], prefix.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BGP, scope, rtype,
        nh_flags if len(nhs) == 1 else 0,
        8, RTA_TABLE, RT_TABLE_MAIN, 4 + alen, RTA_DST, prefix.network_address.packed,
    )  # fmt: skip
    if len(nhs) == 1:
        if nh_flags:
            s = _ONLINK[version]
            return s.pack(s.size, *head, 4 + alen, RTA_GATEWAY, nhs[0].packed, 8, RTA_OIF, oif)
        s = _UNICAST[version]
        return s.pack(s.size, *head, 4 + alen, RTA_GATEWAY, nhs[0].packed)
    s = _SHORT[version]
    if not nhs:
        return s.pack(s.size, *head)
    # ECMP: RTA_MULTIPATH holds one rtnexthop per gateway, each with its RTA_GATEWAY.
    hop = _RTNH.pack(12 + alen, nh_flags, 0, oif if nh_flags else 0)
    hop += RTA.pack(4 + alen, RTA_GATEWAY)
    mp = b"".join(hop + nh.packed for nh in nhs)
    return s.pack(s.size + 4 + len(mp), *head) + RTA.pack(4 + len(mp), RTA_MULTIPATH) + mp


def parse_route(
    buf: bytearray,
    off: int,
    end: int,
    version: int,
    gateways: dict[bytes, Address],
    *,
    devs: Mapping[int, str] | None = None,
) -> tuple[KernelRoute, int] | None:
    """A KernelRoute from an RTM_NEWROUTE payload and the ifindex its onlink next hops use
    (0 when not onlink), or None when not ours. An onlink route gets its device name from
    `devs` (ifindex -> name, names believed current; the caller checks them), else none."""
    if end - off == 44 and version == 4:  # the common IPv4 shape, in one unpack
        plen, table, proto, rtype, rflags, t1, table2, t2, dst, t3, gw, t4, oif = (
            _FAST4.unpack_from(buf, off)
        )
        if (t1, t2, t3, t4, table2, rtype) == (RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF, 254, 1):
            if proto != RTPROT_BGP:
                return None
            addr = gateways.get(gw)
            if addr is None:
                addr = gateways[gw] = ipaddress.IPv4Address(gw)
            if not rflags & RTNH_F_ONLINK:
                return KernelRoute(ipaddress.IPv4Network((dst, plen)), (addr,)), 0
            dev = devs.get(oif) if devs else None
            return KernelRoute(ipaddress.IPv4Network((dst, plen)), (addr,), dev), oif
    _fam, plen, _slen, _tos, table, proto, _scope, rtype, rflags = RTM.unpack_from(buf, off)
    if proto != RTPROT_BGP:
        return None
    oifs: set[int] = set()
    plain = False  # a next hop without onlink
    alen = _ALEN[version]
    dst = bytes(alen)
    gws: list[bytes] = []
    odd = rtype not in (RTN_UNICAST, RTN_BLACKHOLE)
    pos = off + 12
    unpack = RTA.unpack_from
    while pos + 4 <= end:
        rlen, rtype_attr = unpack(buf, pos)
        if rlen < 4:
            break
        if rtype_attr == RTA_DST:
            dst = bytes(buf[pos + 4 : pos + 4 + alen])
        elif rtype_attr == RTA_GATEWAY:
            gws.append(bytes(buf[pos + 4 : pos + 4 + alen]))
        elif rtype_attr == RTA_OIF:
            if rflags & RTNH_F_ONLINK:
                oifs.add(U32.unpack_from(buf, pos + 4)[0])
            else:
                plain = True
        elif rtype_attr == RTA_TABLE:
            table = U32.unpack_from(buf, pos + 4)[0]
        elif rtype_attr == RTA_MULTIPATH:
            for gw, hop_flags, hop_oif in parse_multipath(buf, pos + 4, pos + rlen, alen):
                gws.append(gw)
                if hop_flags & RTNH_F_ONLINK:
                    oifs.add(hop_oif)
                else:
                    plain = True
        elif rtype_attr == RTA_NH_ID:
            odd = True
        pos += (rlen + 3) & ~3
    if table != RT_TABLE_MAIN:
        return None
    net: Network = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((dst, plen))
    if rtype == RTN_UNICAST and not gws:
        odd = True  # a device-only route: not a shape kroute programs
    if oifs and (plain or len(oifs) > 1):
        odd = True  # onlink mixed with plain hops, or over several devices: not kroute's
    if odd:
        gws, oifs = [bytes(alen)], set()
    elif rtype == RTN_BLACKHOLE:
        gws = []
    hops: list[Address] = []
    for gw in gws:
        addr = gateways.get(gw)
        if addr is None:
            addr = gateways[gw] = ipaddress.ip_address(gw)
        hops.append(addr)
    oif = oifs.pop() if oifs else 0
    return KernelRoute(net, tuple(hops), devs.get(oif) if oif and devs else None), oif


def parse_multipath(buf: bytearray, pos: int, end: int, alen: int) -> list[tuple[bytes, int, int]]:
    """(gateway, rtnh_flags, rtnh_ifindex) of each next hop in an RTA_MULTIPATH."""
    gws: list[tuple[bytes, int, int]] = []
    while pos + 8 <= end:
        hlen, hop_flags, _hops, hop_oif = _RTNH.unpack_from(buf, pos)
        if hlen < 8:
            break
        apos, hend = pos + 8, pos + hlen
        while apos + 4 <= hend:
            rlen, rtype = RTA.unpack_from(buf, apos)
            if rlen < 4:
                break
            if rtype == RTA_GATEWAY:
                gws.append((bytes(buf[apos + 4 : apos + 4 + alen]), hop_flags, hop_oif))
            apos += (rlen + 3) & ~3
        pos += (hlen + 3) & ~3
    return gws
