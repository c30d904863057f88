"""A small client for the daemon's status API over its unix socket (stdlib only)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any

from bgpd.config import DEFAULT_SOCKET
from bgpd.errors import ConfigError, KrouteError


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


def call(
    path: str, endpoint: str, method: str = "GET", timeout: float = 5.0, body: Any = None
) -> Any:
    """One request to the daemon on the unix socket `path` (`body` sent as JSON); the
    decoded JSON answer. HTTP 422 (invalid input) raises ConfigError with its lines."""
    conn = _UnixHTTPConnection(path, timeout)
    try:
        if body is None:
            conn.request(method, endpoint)
        else:
            headers = {"Content-Type": "application/json"}
            conn.request(method, endpoint, json.dumps(body).encode(), headers)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise KrouteError(
            f"cannot reach kroute at {path}: {exc.strerror or exc}; is `kroute run` running? "
            "(set --socket or KROUTE_SOCKET for another daemon)"
        ) from None
    finally:
        conn.close()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if response.status == 422 and isinstance(data, dict) and data.get("errors"):
        raise ConfigError([str(line) for line in data["errors"]])
    if response.status != 200:
        detail = data.get("error") if isinstance(data, dict) else None
        raise KrouteError(
            f"kroute at {path} answered HTTP {response.status}: {detail or body[:200]!r}"
        )
    if data is None:
        raise KrouteError(f"kroute at {path} answered something that is not JSON")
    return data


def fetch_status(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /status from the daemon listening on the unix socket `path`."""
    data = call(path, "/status", timeout=timeout)
    if not isinstance(data, dict):
        raise KrouteError(f"kroute at {path} answered JSON that is not an object")
    return data
