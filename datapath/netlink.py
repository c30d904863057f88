"""Bulk rtnetlink for kroute's routes, on a raw NETLINK_ROUTE socket.

Why not pyroute2: its per-message encoding and per-ack round trip cap it at a few
thousand routes/s. Here messages are packed from precompiled `struct` layouts
(datapath/netlink_codec.py), a few thousand go out per `sendmsg`, and no message asks
for an ack: the kernel answers only failures (NLMSG_ERROR with the failing seq, which
maps back to the route). Each batch ends with an NLMSG_NOOP barrier that does ask for an
ack; rtnetlink handles a batch synchronously inside `sendmsg`, so once the barrier's ack
is read every error of the batch has been read too. Errors cannot be lost silently: if
the receive buffer overflowed the kernel reports ENOBUFS, and the batch is re-sent in
smaller pieces (upsert is NLM_F_REPLACE and delete of a missing route is success, so
re-sending is safe).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Sequence

from common.errors import DatapathError
from datapath.netlink_codec import (
    FAMILY,
    HDR,
    I32,
    IFI,
    IFLA_IFNAME,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    RT_TABLE_MAIN,
    RTA,
    RTA_TABLE,
    RTM,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    U32,
    attributes,
    encode_route,
    error_text,
    messages,
    pad_name,
    parse_route,
)
from datapath.routes import (
    RTPROT_BGP,
    Address,
    ApplyResult,
    KernelRoute,
    Network,
    RouteChanges,
    gc_paused,
)

SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 270, 10, 11, 12
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
CLONE_NEWNET = 0x40000000

_Op = tuple[KernelRoute, bool, int]  # (route, is_delete, ifindex of route.dev or 0)
_Failure = tuple[KernelRoute, str]
_ERR_MSG_ESTIMATE = 1280  # receive-buffer cost of one error reply; 832 bytes measured on 6.18


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
        self._sock = open_route_socket(netns)
        self._seq = 0
        self._buf = bytearray(1 << 20)
        self._devs: dict[int, str] = {}  # onlink devices' names as of the last dump
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
        """Upserts first (make before break), then deletes; failures per route, by seq.
        A route whose `dev` does not exist fails alone, like a kernel error."""
        indexes = {d: self.link_index(d) for d in {r.dev for r in changes.upserts if r.dev}}
        ops: list[_Op] = []
        failed: list[_Failure] = []
        for r in changes.upserts:
            index = indexes[r.dev] if r.dev else 0
            if r.dev and not index:
                failed.append((r, f"device {r.dev!r} not found (errno {errno.ENODEV})"))
            else:
                ops.append((r, False, index))
        ops.extend((r, True, 0) for r in changes.deletes)
        applied = 0
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
        msgs = [encode_route(r, d, (base + i) & 0xFFFFFFFF, x) for i, (r, d, x) in enumerate(ops)]
        barrier = (base + len(ops)) & 0xFFFFFFFF
        msgs.append(HDR.pack(16, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, barrier, 0))
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
            route, delete, _ = ops[index]
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
            for mtype, mflags, seq, off, end in messages(buf, n):
                if mtype != NLMSG_ERROR:
                    continue
                if seq == barrier:
                    done = True
                    continue
                index = (seq - base) & 0xFFFFFFFF
                if index >= count:
                    continue  # a reply to an earlier, abandoned batch
                code = -I32.unpack_from(buf, off)[0]
                if code:
                    errors[index] = (code, error_text(buf, mflags, off, end, code))
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

    # -- links ---------------------------------------------------------------------------

    def link_index(self, name: str) -> int:
        """The ifindex of device `name` in this socket's namespace, 0 when there is none."""
        found = self._get_link(RTA.pack(4 + len(name) + 1, IFLA_IFNAME) + pad_name(name))
        return found[0] if found else 0

    def link_name(self, index: int) -> str | None:
        """The name of device `index`, None when there is none."""
        found = self._get_link(b"", index)
        return found[1] if found else None

    def _get_link(self, attrs: bytes, index: int = 0) -> tuple[int, str] | None:
        seq = self._next_seqs(1)
        body = IFI.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attrs
        self._sock.sendall(HDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body)
        buf, view = self._buf, memoryview(self._buf)
        while True:
            n = self._sock.recv_into(view)
            for mtype, mflags, mseq, off, end in messages(buf, n):
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -I32.unpack_from(buf, off)[0]
                    if code in (errno.ENODEV, errno.ENOENT):
                        return None
                    text = error_text(buf, mflags, off, end, code)
                    raise DatapathError(f"link lookup refused: {text}")
                if mtype == RTM_NEWLINK:
                    found = IFI.unpack_from(buf, off)[2]
                    for atype, at, stop in attributes(buf, off + IFI.size, end):
                        if atype == IFLA_IFNAME:
                            raw = bytes(buf[at:stop]).split(b"\0")[0]
                            return found, raw.decode(errors="replace")
                    return found, ""

    def _dump_family(self, version: int) -> tuple[dict[Network, KernelRoute], bool]:
        seq = self._next_seqs(1)
        req = HDR.pack(36, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        req += RTM.pack(FAMILY[version], 0, 0, 0, RT_TABLE_MAIN, RTPROT_BGP, 0, 0, 0)
        req += RTA.pack(8, RTA_TABLE) + U32.pack(RT_TABLE_MAIN)
        routes: dict[Network, KernelRoute] = {}
        interrupted = False
        gateways: dict[bytes, Address] = {}
        onlink: dict[int, list[Network]] = {}  # ifindex of an onlink device -> its prefixes
        buf, view = self._buf, memoryview(self._buf)
        try:
            self._sock.sendall(req)
            while True:
                n = self._sock.recv_into(view)
                for mtype, mflags, mseq, off, end in messages(buf, n):
                    if mseq != seq:
                        continue
                    if mflags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if mtype == NLMSG_DONE:
                        self._name_devices(routes, onlink)
                        return routes, interrupted
                    if mtype == NLMSG_ERROR:
                        code = -I32.unpack_from(buf, off)[0]
                        text = error_text(buf, mflags, off, end, code)
                        raise DatapathError(f"IPv{version} route dump refused: {text}")
                    if mtype == RTM_NEWROUTE:
                        parsed = parse_route(buf, off, end, version, gateways, devs=self._devs)
                        if parsed is not None:
                            route, oif = parsed
                            routes[route.prefix] = route
                            if oif:
                                onlink.setdefault(oif, []).append(route.prefix)
        except OSError as exc:
            raise DatapathError(
                f"IPv{version} route dump failed ({exc}); check the namespace and permissions"
            ) from exc

    def _name_devices(
        self, routes: dict[Network, KernelRoute], onlink: dict[int, list[Network]]
    ) -> None:
        """Check the device names the dump used against the kernel, once per device (a
        request cannot interleave with a running dump), and fix routes named from a stale
        cache. A device gone meanwhile leaves the route nameless: it never equals a desired
        route, so it gets replaced."""
        for oif, prefixes in onlink.items():
            name = self.link_name(oif)
            if self._devs.get(oif) == name:
                continue
            if name:
                self._devs[oif] = name
            else:
                self._devs.pop(oif, None)
            for prefix in prefixes:
                route = routes[prefix]
                routes[prefix] = KernelRoute(route.prefix, route.nexthops, name)


def open_route_socket(netns: str | None) -> socket.socket:
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
