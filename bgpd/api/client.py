"""A small client for the daemon's status API (stdlib only).

A daemon is reached on its unix socket (`--socket PATH`, `$KROUTE_SOCKET`, the
default path), or on its read-only TCP listener (`--address HOST:PORT`, the
config's `status.listen`). Commands that change the node go only over the unix
socket: the TCP listener answers GET and nothing else.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
from typing import Any

from bgpd.config.model import DEFAULT_SOCKET, parse_listen
from common.errors import ConfigError, KrouteError

TCP = "http://"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def socket_path(arg: str | None) -> str:
    """`--socket`, else `KROUTE_SOCKET`, else the default path."""
    return arg or os.environ.get("KROUTE_SOCKET") or DEFAULT_SOCKET


def add_target_flags(parser: argparse.ArgumentParser, *, read_only: bool) -> None:
    """`--socket PATH`, and for commands that only read, `--address HOST:PORT`."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the daemon's unix socket (default: $KROUTE_SOCKET or {DEFAULT_SOCKET})",
    )
    if read_only:
        where.add_argument(
            "--address",
            metavar="HOST:PORT",
            help="the daemon's read-only TCP listener (its status.listen), e.g. 10.0.0.5:9479",
        )


def target(args: argparse.Namespace) -> str:
    """Where the command talks to: a socket path, or `http://HOST:PORT`."""
    address = getattr(args, "address", None)
    if address:
        try:
            host, port = parse_listen(address)
        except ValueError as exc:
            raise KrouteError(f"--address: {exc}") from None
        return f"{TCP}{'[' + host + ']' if ':' in host else host}:{port}"
    return socket_path(args.socket)


def _connection(where: str, timeout: float) -> http.client.HTTPConnection:
    if where.startswith(TCP):
        return http.client.HTTPConnection(where.removeprefix(TCP), timeout=timeout)
    return _UnixHTTPConnection(where, timeout)


def request(
    where: str, endpoint: str, method: str = "GET", timeout: float = 5.0, body: Any = None
) -> tuple[int, bytes]:
    """One request to the daemon at `where` (socket path or http://HOST:PORT); `body`
    goes as JSON."""
    if method != "GET" and where.startswith(TCP):
        raise KrouteError(
            f"{method} {endpoint}: changes go only over the daemon's unix socket, "
            "not its read-only TCP listener; use --socket on the node itself"
        )
    conn = _connection(where, timeout)
    try:
        if body is None:
            conn.request(method, endpoint)
        else:
            headers = {"Content-Type": "application/json"}
            conn.request(method, endpoint, json.dumps(body).encode(), headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as exc:
        raise KrouteError(
            f"cannot reach kroute at {where}: {exc.strerror or exc}; is `kroute run` running? "
            "(set --socket, --address or KROUTE_SOCKET for another daemon)"
        ) from None
    finally:
        conn.close()


def call(
    where: str, endpoint: str, method: str = "GET", timeout: float = 5.0, body: Any = None
) -> Any:
    """One request; the decoded JSON answer, or KrouteError with the daemon's error.
    HTTP 422 (invalid input) raises ConfigError with the daemon's lines."""
    status, answer = request(where, endpoint, method, timeout, body)
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    if status == 422 and isinstance(data, dict) and data.get("errors"):
        raise ConfigError([str(line) for line in data["errors"]])
    if status != 200:
        detail = data.get("error") if isinstance(data, dict) else None
        raise KrouteError(f"kroute at {where} answered HTTP {status}: {detail or answer[:200]!r}")
    if data is None:
        raise KrouteError(f"kroute at {where} answered something that is not JSON")
    return data


def fetch_status(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /status from the daemon at `path` (socket path or http://HOST:PORT)."""
    data = call(path, "/status", timeout=timeout)
    if not isinstance(data, dict):
        raise KrouteError(f"kroute at {path} answered JSON that is not an object")
    return data
