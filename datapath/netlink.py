"""Bulk rtnetlink for kroute's routes, on a raw NETLINK_ROUTE socket.

Why not pyroute2: its per-message encoding and per-ack round trip cap it at a few
thousand routes/s. Here messages are packed from precompiled `struct` layouts, a few
thousand go out per `sendmsg`, and no message asks for an ack: the kernel answers only
failures (NLMSG_ERROR with the failing seq, which maps back to the route). Each batch
ends with an NLMSG_NOOP barrier that does ask for an ack; rtnetlink handles a batch
synchronously inside `sendmsg`, so once the barrier's ack is read every error of the
batch has been read too. Errors cannot be lost silently: if the receive buffer
overflowed the kernel reports ENOBUFS, and the batch is re-sent in smaller pieces
(upsert is NLM_F_REPLACE and delete of a missing route is success, so re-sending is safe).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator, Sequence

from bgpd.errors import DatapathError
from datapath.routes import (
    RTPROT_BGP,
    Address,
    ApplyResult,
    KernelRoute,
    Network,
    RouteChanges,
    gc_paused,
)

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x4, 0x10
NLM_F_REPLACE, NLM_F_CREATE, NLM_F_DUMP = 0x100, 0x400, 0x300
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
RTA_DST, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE, RTA_NH_ID = 1, 5, 9, 15, 30
NLMSGERR_ATTR_MSG = 1
RT_TABLE_MAIN, RTN_UNICAST, RTN_BLACKHOLE = 254, 1, 6
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 270, 10, 11, 12
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
CLONE_NEWNET = 0x40000000

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RTM = struct.Struct("=BBBBBBBBI")  # rtmsg
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
_UPSERT_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
_ALEN = {4: 4, 6: 16}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_Op = tuple[KernelRoute, bool]  # (route, is_delete)
_Failure = tuple[KernelRoute, str]
_ERR_MSG_ESTIMATE = 1280  # receive-buffer cost of one error reply; 832 bytes measured on 6.18


def _layout(alen: int, gateway: bool) -> struct.Struct:
    """nlmsghdr + rtmsg + RTA_TABLE + RTA_DST [+ RTA_GATEWAY], packed in one call."""
    fmt = f"=IHHIIBBBBBBBBIHHIHH{alen}s" + (f"HH{alen}s" if gateway else "")
    return struct.Struct(fmt)


# rtmsg + RTA_TABLE + RTA_DST + RTA_GATEWAY + RTA_OIF: how the kernel dumps an IPv4 route.
_FAST4 = struct.Struct("=xB2xBBxB4x2xHI2xH4s2xH4s2xH4x")
_UNICAST = {v: _layout(n, True) for v, n in _ALEN.items()}
_SHORT = {v: _layout(n, False) for v, n in _ALEN.items()}  # blackhole and delete


class NetlinkKernelRoutes:
    """`KernelRoutes` on the kernel: proto 186 routes in the main table, IPv4 and IPv6.

    `netns` names a namespace under /var/run/netns (or is a path to one): the socket is
    opened there, so one process can drive several namespaces. `batch` caps messages per
    `sendmsg`; it is lowered to what the receive buffer can hold if every message failed.
    """

    def __init__(
        self,
        netns: str | None = None,
        *,
        batch: int = 4096,
        sndbuf: int = 32 << 20,
        rcvbuf: int = 32 << 20,
        timeout: float = 30.0,
    ) -> None:
        self.netns = netns
        self._sock = _open_socket(netns)
        self._seq = 0
        self._buf = bytearray(1 << 20)
        try:
            self._setup(sndbuf, rcvbuf, timeout)
        except OSError as exc:
            self._sock.close()
            raise DatapathError(f"netlink socket setup failed ({exc}); run kroute as root") from exc
        self.sndbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.rcvbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.batch = max(1, min(batch, self.rcvbuf // _ERR_MSG_ESTIMATE))

    def _setup(self, sndbuf: int, rcvbuf: int, timeout: float) -> None:
        sock = self._sock
        for force, plain, size in (
            (SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf),
            (SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)  # capped by net.core.*mem_max
        # Error replies without the echoed request, but with the kernel's explanation.
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        for opt in (NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            # Older kernels: plain errors, unfiltered dumps (we filter in Python anyway).
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_NETLINK, opt, 1)
        sock.bind((0, 0))
        sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NetlinkKernelRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- apply ---------------------------------------------------------------------------

    def apply(self, changes: RouteChanges) -> ApplyResult:
        """Upserts first (make before break), then deletes; failures per route, by seq."""
        ops: list[_Op] = [(r, False) for r in changes.upserts]
        ops.extend((r, True) for r in changes.deletes)
        applied = 0
        failed: list[_Failure] = []
        with gc_paused():
            for start in range(0, len(ops), self.batch):
                ok, bad = self._run(ops[start : start + self.batch])
                applied += ok
                failed.extend(bad)
        return ApplyResult(applied, tuple(failed))

    def _run(self, ops: Sequence[_Op]) -> tuple[int, list[_Failure]]:
        """One batch. When the kernel could not answer it all (ENOBUFS) or it is larger than
        the send buffer (EMSGSIZE), again in quarters: the ops are idempotent."""
        base = self._next_seqs(len(ops) + 1)
        msgs = [_encode(r, delete, (base + i) & 0xFFFFFFFF) for i, (r, delete) in enumerate(ops)]
        barrier = (base + len(ops)) & 0xFFFFFFFF
        msgs.append(_HDR.pack(16, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, barrier, 0))
        try:
            self._sock.sendall(b"".join(msgs))
            errors = self._collect(base, len(ops), barrier)
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EMSGSIZE):
                raise DatapathError(
                    f"netlink route batch failed ({exc}); check the namespace and CAP_NET_ADMIN"
                ) from exc
            self._drain()
            if len(ops) == 1:
                raise DatapathError(
                    f"netlink buffers too small even for one route ({exc.strerror}); "
                    "raise net.core.rmem_max and net.core.wmem_max"
                ) from exc
            step = max(1, len(ops) // 4)
            total, bad = 0, []
            for i in range(0, len(ops), step):
                n, b = self._run(ops[i : i + step])
                total += n
                bad.extend(b)
            return total, bad
        bad = []
        for index, (code, text) in sorted(errors.items()):
            route, delete = ops[index]
            if delete and code == errno.ESRCH:
                continue  # already gone: the goal is reached
            bad.append((route, text))
        return len(ops) - len(bad), bad

    def _collect(self, base: int, count: int, barrier: int) -> dict[int, tuple[int, str]]:
        """Read error replies until the barrier's ack; map them to batch indexes."""
        errors: dict[int, tuple[int, str]] = {}
        buf, view = self._buf, memoryview(self._buf)
        while True:
            n = self._sock.recv_into(view)
            done = False
            for mtype, mflags, seq, off, end in _messages(buf, n):
                if mtype != NLMSG_ERROR:
                    continue
                if seq == barrier:
                    done = True
                    continue
                index = (seq - base) & 0xFFFFFFFF
                if index >= count:
                    continue  # a reply to an earlier, abandoned batch
                code = -_I32.unpack_from(buf, off)[0]
                if code:
                    errors[index] = (code, _error_text(buf, mflags, off, end, code))
            if done:
                return errors

    def _drain(self) -> None:
        """Drop whatever replies are still queued (after an overflow they are incomplete)."""
        timeout = self._sock.gettimeout()
        self._sock.setblocking(False)  # MSG_DONTWAIT alone still waits out the timeout
        try:
            while True:
                try:
                    if not self._sock.recv_into(self._buf):
                        return
                except BlockingIOError:
                    return
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        return
        finally:
            self._sock.settimeout(timeout)

    def _next_seqs(self, n: int) -> int:
        base = self._seq + 1
        self._seq = (self._seq + n) & 0xFFFFFFFF
        return base

    # -- dump ----------------------------------------------------------------------------

    def dump(self) -> dict[Network, KernelRoute]:
        """Every proto-186 route in the main table; retried when the kernel interrupts it."""
        routes: dict[Network, KernelRoute] = {}
        for version in (4, 6):
            for _attempt in range(5):
                with gc_paused():
                    part, interrupted = self._dump_family(version)
                if not interrupted:
                    break
            else:
                raise DatapathError(
                    f"IPv{version} route dump kept being interrupted by concurrent changes; "
                    "retry when the routing table is quieter"
                )
            routes.update(part)
        return routes

    def _dump_family(self, version: int) -> tuple[dict[Network, KernelRoute], bool]:
        seq = self._next_seqs(1)
        req = _HDR.pack(36, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        req += _RTM.pack(_FAMILY[version], 0, 0, 0, RT_TABLE_MAIN, RTPROT_BGP, 0, 0, 0)
        req += _RTA.pack(8, RTA_TABLE) + _U32.pack(RT_TABLE_MAIN)
        routes: dict[Network, KernelRoute] = {}
        interrupted = False
        gateways: dict[bytes, Address] = {}
        buf, view = self._buf, memoryview(self._buf)
        try:
            self._sock.sendall(req)
            while True:
                n = self._sock.recv_into(view)
                for mtype, mflags, mseq, off, end in _messages(buf, n):
                    if mseq != seq:
                        continue
                    if mflags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if mtype == NLMSG_DONE:
                        return routes, interrupted
                    if mtype == NLMSG_ERROR:
                        code = -_I32.unpack_from(buf, off)[0]
                        text = _error_text(buf, mflags, off, end, code)
                        raise DatapathError(f"IPv{version} route dump refused: {text}")
                    if mtype == RTM_NEWROUTE:
                        route = _parse_route(buf, off, end, version, gateways)
                        if route is not None:
                            routes[route.prefix] = route
        except OSError as exc:
            raise DatapathError(
                f"IPv{version} route dump failed ({exc}); check the namespace and permissions"
            ) from exc


def _messages(buf: bytearray, n: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, payload offset, end) of each netlink message in buf[:n]."""
    off = 0
    unpack = _HDR.unpack_from
    while off + 16 <= n:
        length, mtype, mflags, seq, _pid = unpack(buf, off)
        if length < 16:
            return
        yield mtype, mflags, seq, off + 16, off + length
        off += (length + 3) & ~3


def _error_text(buf: bytearray, mflags: int, off: int, end: int, code: int) -> str:
    """Error text from an NLMSG_ERROR, e.g. `Network is unreachable (errno 101): <extack>`."""
    text = f"{os.strerror(code)} (errno {code})"
    if not mflags & NLM_F_ACK_TLVS:
        return text
    inner_len = _HDR.unpack_from(buf, off + 4)[0]
    pos = off + 4 + (16 if mflags & NLM_F_CAPPED else (inner_len + 3) & ~3)
    while pos + 4 <= end:
        alen, atype = _RTA.unpack_from(buf, pos)
        if alen < 4:
            break
        if atype == NLMSGERR_ATTR_MSG:
            msg = bytes(buf[pos + 4 : pos + alen]).rstrip(b"\0").decode(errors="replace")
            return f"{text}: {msg}" if msg else text
        pos += (alen + 3) & ~3
    return text


def _encode(route: KernelRoute, delete: bool, seq: int) -> bytes:
    """One RTM_NEWROUTE (create-or-replace) or RTM_DELROUTE message for `route`."""
    prefix, nhs = route.prefix, route.nexthops
    version = prefix.version
    alen = _ALEN[version]
    if delete:  # type unspec and scope nowhere match any shape; protocol 186 only ours
        mtype, flags, scope, rtype, nhs = RTM_DELROUTE, NLM_F_REQUEST, RT_SCOPE_NOWHERE, 0, ()
    else:
        mtype, flags, scope = RTM_NEWROUTE, _UPSERT_FLAGS, RT_SCOPE_UNIVERSE
        rtype = RTN_UNICAST if nhs else RTN_BLACKHOLE
    head = (
        mtype, flags, seq, 0,
        _FAMILY[version], prefix.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BGP, scope, rtype, 0,
        8, RTA_TABLE, RT_TABLE_MAIN, 4 + alen, RTA_DST, prefix.network_address.packed,
    )  # fmt: skip
    if len(nhs) == 1:
        s = _UNICAST[version]
        return s.pack(s.size, *head, 4 + alen, RTA_GATEWAY, nhs[0].packed)
    s = _SHORT[version]
    if not nhs:
        return s.pack(s.size, *head)
    # ECMP: RTA_MULTIPATH holds one rtnexthop per gateway, each with its RTA_GATEWAY.
    hop = _RTNH.pack(12 + alen, 0, 0, 0) + _RTA.pack(4 + alen, RTA_GATEWAY)
    mp = b"".join(hop + nh.packed for nh in nhs)
    return s.pack(s.size + 4 + len(mp), *head) + _RTA.pack(4 + len(mp), RTA_MULTIPATH) + mp


def _parse_route(
    buf: bytearray, off: int, end: int, version: int, gateways: dict[bytes, Address]
) -> KernelRoute | None:
    """A KernelRoute from an RTM_NEWROUTE payload, or None when not ours (proto, table)."""
    if end - off == 44 and version == 4:  # the common IPv4 shape, in one unpack
        plen, table, proto, rtype, t1, table2, t2, dst, t3, gw, t4 = _FAST4.unpack_from(buf, off)
        if (t1, t2, t3, t4, table2, rtype) == (RTA_TABLE, RTA_DST, RTA_GATEWAY, 4, 254, 1):
            if proto != RTPROT_BGP:
                return None
            addr = gateways.get(gw)
            if addr is None:
                addr = gateways[gw] = ipaddress.IPv4Address(gw)
            return KernelRoute(ipaddress.IPv4Network((dst, plen)), (addr,))
    _fam, plen, _slen, _tos, table, proto, _scope, rtype, _fl = _RTM.unpack_from(buf, off)
    if proto != RTPROT_BGP:
        return None
    alen = _ALEN[version]
    dst = bytes(alen)
    gws: list[bytes] = []
    odd = rtype not in (RTN_UNICAST, RTN_BLACKHOLE)
    pos = off + 12
    unpack = _RTA.unpack_from
    while pos + 4 <= end:
        rlen, rtype_attr = unpack(buf, pos)
        if rlen < 4:
            break
        if rtype_attr == RTA_DST:
            dst = bytes(buf[pos + 4 : pos + 4 + alen])
        elif rtype_attr == RTA_GATEWAY:
            gws.append(bytes(buf[pos + 4 : pos + 4 + alen]))
        elif rtype_attr == RTA_TABLE:
            table = _U32.unpack_from(buf, pos + 4)[0]
        elif rtype_attr == RTA_MULTIPATH:
            gws.extend(_parse_multipath(buf, pos + 4, pos + rlen, alen))
        elif rtype_attr == RTA_NH_ID:
            odd = True
        pos += (rlen + 3) & ~3
    if table != RT_TABLE_MAIN:
        return None
    net: Network = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((dst, plen))
    if rtype == RTN_UNICAST and not gws:
        odd = True  # a device-only route: not a shape kroute programs
    if odd:
        gws = [bytes(alen)]
    elif rtype == RTN_BLACKHOLE:
        gws = []
    hops: list[Address] = []
    for gw in gws:
        addr = gateways.get(gw)
        if addr is None:
            addr = gateways[gw] = ipaddress.ip_address(gw)
        hops.append(addr)
    return KernelRoute(net, tuple(hops))


def _parse_multipath(buf: bytearray, pos: int, end: int, alen: int) -> list[bytes]:
    gws: list[bytes] = []
    while pos + 8 <= end:
        hlen = _RTNH.unpack_from(buf, pos)[0]
        if hlen < 8:
            break
        apos, hend = pos + 8, pos + hlen
        while apos + 4 <= hend:
            rlen, rtype = _RTA.unpack_from(buf, apos)
            if rlen < 4:
                break
            if rtype == RTA_GATEWAY:
                gws.append(bytes(buf[apos + 4 : apos + 4 + alen]))
            apos += (rlen + 3) & ~3
        pos += (hlen + 3) & ~3
    return gws


def _open_socket(netns: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket, created inside `netns` when given (setns on this thread only)."""
    if netns is None:
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        except OSError as exc:
            raise DatapathError(f"cannot open a netlink route socket ({exc})") from exc
    path = netns if "/" in netns else f"/var/run/netns/{netns}"
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DatapathError(
            f"network namespace {netns!r} not found at {path} ({exc.strerror}); "
            f"create it with `ip netns add {netns}` or fix the name"
        ) from exc
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, f"cannot enter network namespace {netns!r}; kroute needs CAP_SYS_ADMIN")
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        finally:
            _setns(own, "cannot return to the original network namespace; restart kroute")
    finally:
        os.close(target)
        os.close(own)


_libc: ctypes.CDLL | None = None


def _setns(fd: int, what: str) -> None:
    global _libc  # noqa: PLW0603 - loaded once, on first use
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise DatapathError(f"{what} ({os.strerror(err)})")
