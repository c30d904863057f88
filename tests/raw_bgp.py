"""A BGP speaker that writes raw bytes, for feeding kroute malformed messages.

Real BGP implementations refuse to send broken UPDATEs, so hostile-input tests build
the octets themselves: `update(attrs, nlri)` with attributes from `attr(...)`, any of
which can be made wrong on purpose (bad lengths, flags, values, missing ones).
`RawPeer` listens inside a test namespace (kroute's exabgp connects to it, as to any
configured peer), answers the OPEN, keeps the session alive, and reports what kroute
sends back (KEEPALIVEs, NOTIFICATION codes, a closed socket).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import netns as pyroute2_netns

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4

# Path attribute flags and type codes (RFC 4271 4.3).
OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10
ORIGIN_T, AS_PATH_T, NEXT_HOP_T, MED_T, LOCAL_PREF_T = 1, 2, 3, 4, 5
AS_SEQUENCE = 2


def message(kind: int, body: bytes, length: int | None = None, marker: bytes = MARKER) -> bytes:
    """A BGP message; `length` overrides the header's length field to lie about it."""
    return marker + struct.pack("!HB", 19 + len(body) if length is None else length, kind) + body


def keepalive() -> bytes:
    return message(KEEPALIVE, b"")


def open_message(asn: int, router_id: str, hold_time: int = 9) -> bytes:
    """OPEN with the capabilities exabgp expects: IPv4 unicast MP and 4-octet AS."""
    mp = b"\x01\x04" + struct.pack("!HBB", 1, 0, 1)
    as4 = b"\x41\x04" + struct.pack("!I", asn)
    params = b"\x02" + bytes([len(mp)]) + mp + b"\x02" + bytes([len(as4)]) + as4
    body = struct.pack("!BHH", 4, min(asn, 23456), hold_time)
    body += ipaddress.IPv4Address(router_id).packed + bytes([len(params)]) + params
    return message(OPEN, body)


def attr(flags: int, code: int, value: bytes, length: int | None = None) -> bytes:
    """One path attribute; `length` overrides its length field."""
    size = len(value) if length is None else length
    if flags & EXTENDED:
        return struct.pack("!BBH", flags, code, size) + value
    return struct.pack("!BBB", flags, code, size) + value


def origin(value: int = 0) -> bytes:
    return attr(TRANSITIVE, ORIGIN_T, bytes([value]))


def as_path(*asns: int) -> bytes:
    segment = struct.pack("!BB", AS_SEQUENCE, len(asns)) + b"".join(
        struct.pack("!I", a) for a in asns
    )
    return attr(TRANSITIVE, AS_PATH_T, segment if asns else b"")


def next_hop(address: str) -> bytes:
    return attr(TRANSITIVE, NEXT_HOP_T, ipaddress.IPv4Address(address).packed)


def nlri(prefix: str, length: int | None = None) -> bytes:
    """An NLRI entry; `length` overrides the prefix length octet (e.g. 33)."""
    net = ipaddress.IPv4Network(prefix)
    size = (net.prefixlen + 7) // 8
    return bytes([net.prefixlen if length is None else length]) + net.network_address.packed[:size]


def update(
    attrs: bytes = b"", announce: bytes = b"", withdrawn: bytes = b"", attrs_len: int | None = None
) -> bytes:
    """An UPDATE; `attrs_len` overrides the total path attribute length field."""
    total = len(attrs) if attrs_len is None else attrs_len
    body = struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", total) + attrs
    return message(UPDATE, body + announce)


def valid_attrs(asn: int, hop: str) -> bytes:
    return origin() + as_path(asn) + next_hop(hop)


@dataclass
class RawPeer:
    """One accepted session from kroute: send raw messages, watch what comes back."""

    conn: socket.socket
    notifications: list[tuple[int, int]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    keepalives: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, data: bytes) -> None:
        with self.lock:
            self.conn.sendall(data)

    def close(self) -> None:
        """Drop the TCP session without a NOTIFICATION, as a crashed peer would."""
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        self.closed.wait(5)
        self.conn.close()

    def _read_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def read_loop(self) -> None:
        """Counts KEEPALIVEs, records NOTIFICATIONs, marks the session closed at EOF."""
        try:
            while True:
                header = self._read_exact(19)
                length, kind = struct.unpack("!HB", header[16:])
                body = self._read_exact(length - 19)
                if kind == KEEPALIVE:
                    self.keepalives += 1
                elif kind == NOTIFICATION:
                    self.notifications.append((body[0], body[1]))
        except OSError:
            pass
        finally:
            self.closed.set()


@contextlib.contextmanager
def raw_listener(ns: str, address: str, port: int = 179) -> Iterator[socket.socket]:
    """A TCP listener bound inside namespace `ns` (the socket keeps its namespace)."""
    pyroute2_netns.pushns(ns)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    finally:
        pyroute2_netns.popns()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(8)
        yield sock
    finally:
        sock.close()


def accept_session(listener: socket.socket, asn: int, router_id: str, timeout: float) -> RawPeer:
    """Accept kroute's connection, exchange OPENs and KEEPALIVEs, start the reader.

    kroute's OPEN is read and not checked beyond its type: the tests are about what
    kroute does with our messages, not about its OPEN."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    conn.settimeout(None)
    peer = RawPeer(conn)
    header = peer._read_exact(19)
    length, kind = struct.unpack("!HB", header[16:])
    peer._read_exact(length - 19)
    if kind != OPEN:
        raise AssertionError(f"expected OPEN from kroute, got message type {kind}")
    peer.send(open_message(asn, router_id) + keepalive())
    threading.Thread(target=peer.read_loop, daemon=True).start()
    threading.Thread(target=_keepalives, args=(peer,), daemon=True).start()
    return peer


def _keepalives(peer: RawPeer) -> None:
    while not peer.closed.wait(3):
        with contextlib.suppress(OSError):
            peer.send(keepalive())
