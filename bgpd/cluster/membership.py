"""Cluster membership through etcd: each node keeps its `Member` record under a lease.

A node `register()`s `/kroute/nodes/<name>` under a lease of `ttl` seconds and keeps
the lease alive in a background task; when the node dies the lease expires and the
record disappears, which is how the other nodes notice (`watch()` yields the new map).
The etcd plumbing (failover, TLS, auth, bounded retries) is `ipam.etcd_store`'s
`EtcdConnection`. `tests.fakes.membership` has the in-memory twin for unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aetcd
import grpc

from ipam.etcd_store import EtcdAccess, EtcdConnection, EtcdError, TransientEtcdError, backoff

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}")


@dataclass(frozen=True)
class Member:
    """One node as the cluster sees it; stored as JSON (camelCase, like the config)."""

    name: str
    ip: str
    router_id: str
    asn: int
    pod_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"member name {self.name!r}: use letters, digits, '-', '_', '.'")

    def to_json(self) -> str:
        doc = {
            "name": self.name,
            "ip": self.ip,
            "routerId": self.router_id,
            "asn": self.asn,
            "podCIDRs": list(self.pod_cidrs),
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Member:
        """Parse a record; ValueError says what is wrong with it."""
        try:
            doc = json.loads(text)
            member = cls(
                name=str(doc["name"]),
                ip=str(doc["ip"]),
                router_id=str(doc["routerId"]),
                asn=int(doc["asn"]),
                pod_cidrs=tuple(str(c) for c in doc.get("podCIDRs", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed member record ({e!r})") from None
        return member


class Membership(Protocol):
    """What the daemon needs from cluster membership."""

    async def register(self, member: Member) -> None: ...
    async def deregister(self) -> None: ...
    async def members(self) -> dict[str, Member]: ...
    def watch(self) -> AsyncIterator[dict[str, Member]]: ...
    async def close(self) -> None: ...


def _channel_cancelled() -> bool:
    """A CancelledError nobody asked this task for: grpc.aio cancels the calls of a
    channel that another task closed (its reset after a failure). Not a reason to end."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


class EtcdMembership:
    """Membership in etcd under `prefix`, one leased key per node."""

    def __init__(
        self,
        endpoints: list[str] | tuple[str, ...],
        prefix: str = "/kroute/nodes",
        ttl: int = 10,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        retry_for: float = 15.0,
    ) -> None:
        if ttl < 2:
            raise EtcdError(f"membership ttl {ttl}: use at least 2 seconds")
        access = EtcdAccess(tuple(endpoints), ca_file, cert_file, key_file, username, password)
        self._conn = EtcdConnection(access, timeout=timeout, retry_for=retry_for)
        self.prefix = prefix.rstrip("/") + "/"
        self.ttl = ttl
        self._member: Member | None = None
        self._lease: int | None = None
        self._keepalive: asyncio.Task[None] | None = None

    def _key(self, name: str) -> bytes:
        return (self.prefix + name).encode()

    async def register(self, member: Member) -> None:
        """Publish `member` under a fresh lease (bounded retries, then EtcdError) and keep
        the lease alive until `deregister()` or `close()`."""
        await self._stop_keepalive()
        self._member, self._lease = member, None
        await self._conn.call(self._publish, f"registering node {member.name}")
        self._keepalive = asyncio.create_task(self._keep_alive(), name="membership-keepalive")
        log.info("event=member-registered node=%s ttl=%d", member.name, self.ttl)

    async def _publish(self, client: Any) -> None:
        assert self._member is not None
        if self._lease is None:
            self._lease = (await client.lease(self.ttl)).id
        await client.put(self._key(self._member.name), self._member.to_json().encode(), self._lease)

    async def _refresh(self, client: Any) -> None:
        """Renew the lease; re-publish if etcd lost the lease or the key."""
        assert self._member is not None
        if self._lease is not None:
            reply = await client.refresh_lease(self._lease)
            if reply is None or reply.TTL <= 0:
                log.warning("event=member-lease-lost node=%s", self._member.name)
                self._lease = None
        kv = None if self._lease is None else await client.get(self._key(self._member.name))
        if kv is None or kv.lease != self._lease or kv.value != self._member.to_json().encode():
            await self._publish(client)

    async def _keep_alive(self) -> None:
        assert self._member is not None
        failures = 0
        while True:
            await asyncio.sleep(self.ttl / 3 if failures == 0 else backoff(failures, 0.2))
            try:
                # bounded: a keepalive stream to an etcd that froze can hang forever
                async with asyncio.timeout(max(self.ttl, 2)):
                    await self._conn.once(self._refresh, f"renewing node {self._member.name}")
            except (Exception, asyncio.CancelledError) as e:  # outlive any one failure
                if isinstance(e, asyncio.CancelledError) and not _channel_cancelled():
                    raise
                if isinstance(e, TimeoutError):
                    await self._conn.reset()  # the channel hung: start over on a new one
                failures += 1
                if failures == 1:
                    log.warning("event=member-keepalive-failed endpoints=%s error=%r",
                                self._conn.where(), e)  # fmt: skip
                continue
            if failures:
                log.info("event=member-keepalive-recovered node=%s", self._member.name)
            failures = 0

    async def _stop_keepalive(self) -> None:
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def deregister(self) -> None:
        """Remove our record now; if etcd is unreachable the lease expires within `ttl`."""
        await self._stop_keepalive()
        member, lease, self._member, self._lease = self._member, self._lease, None, None
        if member is None:
            return

        async def remove(client: Any) -> None:
            if lease is not None:
                with contextlib.suppress(aetcd.ClientError):  # already expired
                    await client.revoke_lease(lease)
            await client.delete(self._key(member.name))

        try:
            await self._conn.call(remove, f"deregistering node {member.name}")
        except EtcdError as e:
            log.warning("event=member-deregister-failed node=%s error=%s", member.name, e)
        else:
            log.info("event=member-deregistered node=%s", member.name)

    async def _list(self, client: Any) -> tuple[dict[str, Member], int]:
        listing = await client.get_prefix(self.prefix.encode())
        members: dict[str, Member] = {}
        for kv in listing:
            member = self._decode(kv.key, kv.value)
            if member is not None:
                members[member.name] = member
        return members, int(listing.header.revision)

    def _decode(self, key: bytes, value: bytes) -> Member | None:
        name = key.decode(errors="replace")[len(self.prefix) :]
        try:
            member = Member.from_json(value)
        except ValueError as e:
            log.warning("event=member-record-ignored key=%s error=%s", self.prefix + name, e)
            return None
        if member.name != name:
            log.warning("event=member-record-ignored key=%s error=name-mismatch", name)
            return None
        return member

    async def members(self) -> dict[str, Member]:
        """The current members (bounded retries, then EtcdError)."""
        members, _ = await self._conn.call(self._list, "listing cluster members")
        return members

    async def watch(self) -> AsyncIterator[dict[str, Member]]:
        """The full member map now and after every change. Never raises for etcd
        outages or compaction: it relists and resumes, yielding only real changes.
        Ends when `close()` is called."""
        last: dict[str, Member] | None = None
        failures = 0
        while True:
            watch = client = None
            try:
                current, revision = await self._conn.once(self._list, "listing cluster members")
                if current != last:
                    last = dict(current)
                    yield dict(current)

                async def start(c: Any, revision: int = revision) -> tuple[Any, Any]:
                    prefix = self.prefix.encode()
                    return c, await c.watch_prefix(prefix, start_revision=revision + 1)

                client, watch = await self._conn.once(start, "watching cluster members")
                if failures:
                    log.info("event=member-watch-resumed revision=%d", revision)
                failures = 0
                async for event in watch:
                    key = bytes(event.kv.key)
                    name = key.decode(errors="replace")[len(self.prefix) :]
                    member = None if event.kind == "DELETE" else self._decode(key, event.kv.value)
                    if member is None:
                        current.pop(name, None)
                    else:
                        current[name] = member
                    if current != last:
                        last = dict(current)
                        yield dict(current)
                raise TransientEtcdError("the member watch ended")  # relist after a pause
            except (EtcdError, aetcd.ClientError, grpc.RpcError, asyncio.CancelledError) as e:
                if isinstance(e, asyncio.CancelledError) and not _channel_cancelled():
                    raise
                if self._conn.closed:
                    return  # close() was called: the watch is over, not interrupted
                failures += 1
                if not isinstance(e, EtcdError):  # the stream broke: reconnect
                    await self._conn.reset(client)
                if failures == 1:
                    log.warning("event=member-watch-interrupted endpoints=%s error=%s",
                                self._conn.where(), e)  # fmt: skip
                await asyncio.sleep(backoff(failures, 0.2))
            finally:
                if watch is not None:
                    with contextlib.suppress(Exception):
                        await watch.cancel()

    async def close(self) -> None:
        """Stop the keepalive and disconnect; our record stays until its lease expires."""
        await self._stop_keepalive()
        await self._conn.close()
