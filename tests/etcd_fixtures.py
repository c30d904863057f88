"""A real etcd (Debian's `etcd-server`) for integration tests, on free loopback ports.

`EtcdServer` starts etcd on a data dir, waits until it answers `/health`, and stops it by
PID; `stop()` then `start()` on the same data dir simulates an outage that keeps the data.
`etcd_server()` is the context manager tests use: it always stops etcd and removes the
data dir, also when the test fails. Variants: `tls=True` (self-signed CA, server cert for
127.0.0.1, client cert required, made with the `openssl` CLI) and `enable_auth()` (root
user with a password, through the gRPC auth API because `etcdctl` is not installed here).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import grpc
from aetcd import rpc

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway PKI: CA, etcd's server cert, and a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_tls(directory: Path) -> TlsFiles:
    """Generate a CA, a server cert valid for 127.0.0.1/localhost and a client cert."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=kroute-test-ca",
    )  # fmt: skip
    files: dict[str, tuple[Path, Path]] = {}
    for role, cn, ext in (
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
         "extendedKeyUsage=serverAuth,clientAuth\n"),
        ("client", "root", "extendedKeyUsage=clientAuth\n"),
    ):  # fmt: skip
        key, csr, cert = (directory / f"{role}{s}" for s in ("-key.pem", ".csr", ".pem"))
        extfile = directory / f"{role}.ext"
        extfile.write_text(ext)
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={cn}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extfile),
        )  # fmt: skip
        files[role] = (cert, key)
    return TlsFiles(ca, *files["server"], *files["client"])


class TlsArgs(TypedDict, total=False):
    """The TLS keyword arguments of `EtcdIpamStore` and `EtcdMembership`."""

    ca_file: str
    cert_file: str
    key_file: str


class EtcdServer:
    """One single-member etcd cluster; the data dir survives `stop()`/`start()`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "kroute-test",
        tls: TlsFiles | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.name = name
        self.tls = tls
        self.client_port = free_port()
        self.peer_port = free_port()
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    def _command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            ETCD_BIN, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
            "--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip
        if self.tls:
            cmd += [
                "--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth",
            ]  # fmt: skip
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd and wait until it reports healthy; raise with its log tail if not."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self._command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.healthy():
                return
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"etcd at {self.endpoint} did not become healthy; log tail:\n{tail}")

    def healthy(self) -> bool:
        """True when etcd's `/health` answers `{"health": "true"}`."""
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        try:
            with urllib.request.urlopen(
                f"{self.endpoint}/health", timeout=1, context=context
            ) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop etcd by its PID (SIGKILL if it does not exit in time); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self) -> None:
        """kill -9: what a crash or power loss looks like to clients."""
        self.stop(signal.SIGKILL)

    def client_kwargs(self) -> TlsArgs:
        """Keyword arguments for kroute's etcd clients (`ca_file`, `cert_file`, `key_file`)."""
        if not self.tls:
            return {}
        return {
            "ca_file": str(self.tls.ca),
            "cert_file": str(self.tls.client_cert),
            "key_file": str(self.tls.client_key),
        }

    def _channel(self) -> grpc.Channel:
        target = f"127.0.0.1:{self.client_port}"
        if not self.tls:
            return grpc.insecure_channel(target)
        creds = grpc.ssl_channel_credentials(
            self.tls.ca.read_bytes(),
            self.tls.client_key.read_bytes(),
            self.tls.client_cert.read_bytes(),
        )
        return grpc.secure_channel(target, creds)

    def enable_auth(self, password: str, user: str = "root") -> None:
        """Create `user` with the root role and turn authentication on (what
        `etcdctl user add root && etcdctl auth enable` does)."""
        with self._channel() as channel:
            auth = rpc.AuthStub(channel)
            auth.UserAdd(rpc.AuthUserAddRequest(name=user, password=password), timeout=5)
            auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=5)
            auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=user, role="root"), timeout=5)
            auth.AuthEnable(rpc.AuthEnableRequest(), timeout=5)


@contextlib.contextmanager
def etcd_server(
    *, tls: bool = False, name: str = "kroute-test", extra_args: tuple[str, ...] = ()
) -> Iterator[EtcdServer]:
    """A running etcd in a fresh temp dir; stopped and removed afterwards, even on failure.
    `extra_args` go to etcd as they are (for example `--auth-token-ttl=1`)."""
    base = Path(tempfile.mkdtemp(prefix="kroute-etcd-"))
    pki = make_tls(base / "pki") if tls else None
    server = EtcdServer(base / "data", name=name, tls=pki, extra_args=extra_args)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
