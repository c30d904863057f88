"""The API process ExaBGP runs: relays its stdin/stdout to the daemon's unix socket.

ExaBGP talks to API processes over pipes; the daemon wants one socket it owns. This
bridge connects to that socket and copies bytes both ways. When either side closes,
the bridge exits, and ExaBGP (run with `exabgp_api_terminate=true`) exits with it, so
a dead daemon never leaves an ExaBGP behind. Standard library only: it starts fast.
"""

import os
import socket
import sys
import threading
import time

CONNECT_TIMEOUT = 10.0


def _connect(path: str) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _exabgp_to_daemon(sock: socket.socket) -> None:
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        sock.sendall(data)
    os._exit(0)


def main() -> None:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m bgpd.bgp.bridge SOCKET\n")
        raise SystemExit(2)
    sock = _connect(sys.argv[1])
    threading.Thread(target=_exabgp_to_daemon, args=(sock,), daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]
    os._exit(0)


if __name__ == "__main__":
    main()
