"""IPAM state in etcd: the whole `IpamState` as JSON under one key, changed by CAS.

Each change reads the key with its mod_revision, applies one pure `ipam.allocator`
function, and writes in a transaction that succeeds only if the key is still at that
revision (or still absent); a lost race re-reads and retries after a short jittered
pause. A write is one put of the whole document, so there are no partial writes. When
etcd cannot be reached within the retry budget the call raises `StoreUnavailableError`
and nothing is changed or released. Replaying a request is safe: allocation is idempotent
per node and per (container ID, interface), which also covers a write whose reply was lost.

`EtcdConnection` (endpoint failover, TLS and client certificates, user/password auth,
bounded retries) is shared with `bgpd.cluster.membership`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import aetcd
import grpc
from aetcd import rpc

from common.errors import KrouteError
from ipam.allocator import IpamState
from ipam.store import Mutation, StoreCorruptError, StoreError, TransactionalStore, transact

T = TypeVar("T")

# Errors after which a fresh connection (and a fresh auth token) may well succeed.
_TRANSIENT = (
    aetcd.ConnectionFailedError,
    aetcd.ConnectionTimeoutError,
    aetcd.WatchTimeoutError,
    aetcd.InternalError,
    aetcd.exceptions.UnauthenticatedError,  # expired token: aetcd never logs in again itself
    TimeoutError,
    grpc.aio.UsageError,  # a channel closed under us by a concurrent reset
)


class EtcdError(KrouteError):
    """etcd could not be used: unreachable, refused our credentials, or misconfigured."""


class TransientEtcdError(EtcdError):
    """One attempt failed for a reason that may pass (etcd down, leader change)."""


def backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential delay with jitter, so contending nodes do not retry in lockstep."""
    return min(cap, base * (1 << min(attempt, 16))) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class EtcdAccess:
    """Where etcd is and how to authenticate; the password never appears in repr."""

    endpoints: tuple[str, ...]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise EtcdError("etcd endpoints: none given; list at least one http(s)://HOST:PORT")
        if (self.username is None) != (self.password is None):
            raise EtcdError("etcd credentials: give both a user name and a password, or neither")
        if (self.cert_file is None) != (self.key_file is None):
            raise EtcdError("etcd client certificate: give both certFile and keyFile, or neither")


class _Client(aetcd.Client):  # type: ignore[misc]
    """aetcd 1.0.0 only opens plaintext channels; this `connect` also does TLS and mTLS."""

    _is_connecting: bool

    def __init__(self, credentials: grpc.ChannelCredentials | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials
        self.retired = False  # aetcd reconnects a closed client on the next call; we must not

    async def connect(self) -> None:
        if self.retired:
            raise aetcd.ConnectionFailedError("this etcd connection was reset")
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        self._is_connecting = True
        target, options = f"{self._host}:{self._port}", list(self._options.items())
        try:
            if self._credentials is None:
                self.channel = grpc.aio.insecure_channel(target, options=options)
            else:
                self.channel = grpc.aio.secure_channel(target, self._credentials, options=options)
            if self._username is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                reply = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", reply.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        except rpc.AioRpcError as e:
            await self.channel.close()
            self._init_channel_attrs()
            aetcd.exceptions._handle_exception(e)
        finally:
            self._is_connecting = False


class EtcdConnection:
    """One etcd client at a time, failing over between endpoints on transport errors."""

    # Detect dead TCP connections (a watch would otherwise wait forever); etcd refuses
    # pings more often than every 5 s (--grpc-keepalive-min-time).
    _OPTIONS: ClassVar[dict[str, int]] = {
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.max_pings_without_data": 0,
    }

    def __init__(self, access: EtcdAccess, *, timeout: float = 5.0, retry_for: float = 15.0):
        self.access = access
        self.timeout = timeout
        self.retry_for = retry_for
        self._targets = [self._parse(e) for e in access.endpoints]
        self._index = 0
        self._client: _Client | None = None
        self._credentials = self._load_credentials()
        self._closed = False

    def _parse(self, endpoint: str) -> tuple[str, int]:
        url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise EtcdError(f"etcd endpoint {endpoint!r} is invalid; use http(s)://HOST:PORT")
        return url.hostname, url.port or 2379

    def _load_credentials(self) -> grpc.ChannelCredentials | None:
        a = self.access
        tls = a.ca_file or a.cert_file or any(e.startswith("https://") for e in a.endpoints)
        if not tls:
            return None
        pem: dict[str, bytes | None] = {}
        files = (("caFile", a.ca_file), ("certFile", a.cert_file), ("keyFile", a.key_file))
        for what, path in files:
            try:
                pem[what] = Path(path).read_bytes() if path else None
            except OSError as e:
                raise EtcdError(f"etcd {what} {path}: cannot read it ({e.strerror})") from None
        return grpc.ssl_channel_credentials(pem["caFile"], pem["keyFile"], pem["certFile"])

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def endpoint(self) -> str:
        """The endpoint in use, for messages."""
        return self.access.endpoints[self._index]

    def where(self) -> str:
        return ", ".join(self.access.endpoints)

    async def _connected(self) -> _Client:
        if self._closed:
            raise EtcdError(f"etcd connection to {self.where()} is closed; make a new one")
        if self._client is None:
            host, port = self._targets[self._index]
            a = self.access
            self._client = _Client(
                self._credentials, host=host, port=port, username=a.username,
                password=a.password, timeout=self.timeout, options=self._OPTIONS,
            )  # fmt: skip
        await self._client.connect()
        return self._client

    async def reset(self, failed: _Client | None = None) -> None:
        """Drop the client and move to the next endpoint; a no-op when `failed` was
        already replaced (several tasks share the connection and fail together)."""
        client = self._client
        if client is None or (failed is not None and failed is not client):
            return
        self._client, client.retired = None, True
        self._index = (self._index + 1) % len(self._targets)
        with contextlib.suppress(Exception):
            await client.close()

    async def once(self, op: Callable[[Any], Awaitable[T]], what: str) -> T:
        """One attempt. Transport trouble raises `TransientEtcdError` (after a reset);
        anything else etcd refuses raises `EtcdError`."""
        client = None
        try:
            client = await self._connected()
            return await op(client)
        except _TRANSIENT as e:
            await self.reset(client)
            raise TransientEtcdError(f"{what}: {e}") from e
        except aetcd.ClientError as e:
            detail = str(e)
            hint = "check the etcd request"
            if any(w in detail for w in ("auth", "user", "password", "permission")):
                hint = "check the etcd user name and password files and the user's role"
            raise EtcdError(f"etcd at {self.endpoint} refused {what}: {detail}; {hint}") from e

    async def call(self, op: Callable[[Any], Awaitable[T]], what: str) -> T:
        """`once` with bounded, jittered retries over every endpoint; then `EtcdError`."""
        loop = asyncio.get_running_loop()
        start, attempt = loop.time(), 0
        while True:
            try:
                return await self.once(op, what)
            except TransientEtcdError as e:
                attempt += 1
                delay = backoff(attempt, base=0.1)
                if loop.time() - start + delay > self.retry_for:
                    raise EtcdError(
                        f"etcd is unreachable at {self.where()} while {e} ({attempt} attempts "
                        f"in {loop.time() - start:.0f}s); check that etcd runs and this node "
                        "reaches it, and that the endpoints, CA and client certificate are right"
                    ) from e
                await asyncio.sleep(delay)

    async def close(self) -> None:
        self._closed = True
        await self.reset()


class StoreUnavailableError(StoreError):
    """etcd was unreachable (or refused us) for the whole retry budget."""


class EtcdIpamStore(TransactionalStore):
    """The `IpamStore` on etcd; safe across processes and nodes sharing one etcd."""

    def __init__(
        self,
        endpoints: list[str] | tuple[str, ...],
        prefix: str = "/kroute/ipam",
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        retry_for: float = 15.0,
        attempts: int = 200,
    ) -> None:
        access = EtcdAccess(tuple(endpoints), ca_file, cert_file, key_file, username, password)
        self._conn = EtcdConnection(access, timeout=timeout, retry_for=retry_for)
        self.key = prefix.rstrip("/") + "/state"
        self.attempts = attempts
        self._closed = False

    @property
    def name(self) -> str:
        return f"etcd {self._conn.where()} key {self.key}"

    async def _call(self, op: Callable[[Any], Awaitable[T]], what: str) -> T:
        if self._closed:
            raise StoreError(f"IPAM store {self.name} is closed; open a new EtcdIpamStore")
        try:
            return await self._conn.call(op, f"{what} {self.key}")
        except EtcdError as e:
            raise StoreUnavailableError(
                f"IPAM store: {e}. Nothing was released; retrying the same request is safe"
            ) from e

    async def _read(self) -> tuple[IpamState, int]:
        kv = await self._call(lambda c: c.get(self.key.encode()), "reading IPAM state")
        if kv is None:
            return IpamState(), 0
        try:
            return IpamState.from_json(bytes(kv.value).decode()), int(kv.mod_revision)
        except (UnicodeDecodeError, ValueError) as e:
            raise StoreCorruptError(
                f"IPAM state in {self.name} is corrupt ({e}); restore it from a backup or "
                f"fix it by hand (etcdctl get {self.key}); kroute never resets it"
            ) from None

    async def _transact(self, fn: Mutation[T]) -> T:
        lost = 0

        async def write_if_unchanged(state: IpamState, revision: int) -> bool:
            nonlocal lost

            async def txn(client: Any) -> bool:
                t, key = client.transactions, self.key.encode()
                # A missing key has version 0: that is the create-if-absent case.
                compare = t.mod(key) == revision if revision else t.version(key) == 0
                put = t.put(key, state.to_json().encode())
                # failure=[] explicitly: aetcd 1.0.0 crashes on its own default (None).
                succeeded, _ = await client.transaction(
                    compare=[compare], success=[put], failure=[]
                )
                return bool(succeeded)

            if await self._call(txn, "writing IPAM state"):
                return True
            lost += 1
            await asyncio.sleep(backoff(lost, base=0.005, cap=0.25))
            return False

        return await transact(
            self._read, write_if_unchanged, fn, store=self.name, attempts=self.attempts
        )

    async def snapshot(self) -> IpamState:
        state, _ = await self._read()
        return state

    async def close(self) -> None:
        self._closed = True
        await self._conn.close()
