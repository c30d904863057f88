"""Long-lived traffic between test namespaces, to prove a fault lost nothing.

`Pinger` pings every 20 ms and counts what was lost. `TcpStream` keeps one TCP
connection busy from a client namespace to a server namespace (a paced stream of
numbered bytes) until stopped, then reports what the client sent and what the server
received intact, and whether the connection broke.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

PORT = 5201

# The server accepts one connection and counts bytes, checking their sequence
# (byte i is i % 251), until EOF; then prints a JSON summary.
_SERVER = """
import json, socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
pattern = bytes(range(251)) * 300
total, intact, error = 0, True, ""
try:
    while True:
        data = conn.recv(65536)
        if not data:
            break
        expected = pattern[total % 251 : total % 251 + len(data)]
        intact = intact and data == expected
        total += len(data)
except OSError as exc:
    error = str(exc)
print(json.dumps({"received": total, "intact": intact, "error": error}), flush=True)
"""

# The client sends 16 KiB every 10 ms (about 1.6 MB/s) until SIGINT, then closes
# cleanly and prints what it sent.
_CLIENT = """
import json, signal, socket, sys, time
stop = False
def on_int(*_):
    global stop
    stop = True
signal.signal(signal.SIGINT, on_int)
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
print("connected", flush=True)
sent, error, chunk = 0, "", 16384
pattern = bytes(range(251)) * 100
try:
    while not stop:
        sock.sendall(pattern[sent % 251 : sent % 251 + chunk])
        sent += chunk
        time.sleep(0.01)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)
except OSError as exc:
    error = str(exc)
print(json.dumps({"sent": sent, "error": error}), flush=True)
"""


@dataclass(frozen=True)
class StreamResult:
    sent: int
    received: int
    intact: bool
    error: str


def _in_ns(ns: str, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{ns}", sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class TcpStream:
    """One TCP connection from `client_ns` to `server_ip` (in `server_ns`)."""

    def __init__(self, client_ns: str, server_ns: str, server_ip: str) -> None:
        self._server = _in_ns(server_ns, _SERVER, str(PORT))
        assert self._server.stdout is not None
        assert self._server.stdout.readline().strip() == "listening"
        self._client = _in_ns(client_ns, _CLIENT, server_ip, str(PORT))
        assert self._client.stdout is not None
        line = self._client.stdout.readline().strip()
        if line != "connected":
            self._server.kill()
            raise AssertionError(f"TCP stream to {server_ip} did not connect: {line}")
        time.sleep(0.5)

    def stop(self) -> StreamResult:
        self._client.send_signal(2)  # SIGINT: finish cleanly
        client_out, _ = self._client.communicate(timeout=60)
        server_out, _ = self._server.communicate(timeout=60)
        client = json.loads(client_out.strip().splitlines()[-1])
        server = json.loads(server_out.strip().splitlines()[-1])
        return StreamResult(
            sent=client["sent"],
            received=server["received"],
            intact=server["intact"],
            error=client["error"] or server["error"],
        )


class Pinger:
    """A continuous ping (every 20 ms) from one namespace; counts what was lost."""

    def __init__(self, ns: str, target: str) -> None:
        self._proc = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{ns}", "ping", "-n", "-i", "0.02", target],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.5)

    def stop(self) -> tuple[int, int]:
        """(sent, received)."""
        self._proc.send_signal(signal.SIGINT)
        out, _ = self._proc.communicate(timeout=10)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert match, out
        return int(match.group(1)), int(match.group(2))
