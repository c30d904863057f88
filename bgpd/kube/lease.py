"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection.

Every candidate reads the Lease each `retry` seconds. The holder renews it; another
candidate takes it over only when it has seen the same (holder, renewTime) for longer
than `leaseDurationSeconds` by its own clock (no clock comparison across machines). Each
write carries the resourceVersion it read, so of two racing candidates one gets 409
Conflict and stays a follower: never two leaders from one Lease. A leader that cannot
renew for `renew_deadline` seconds stops leading before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bgpd.kube.api import MERGE_PATCH, REQUEST_TIMEOUT, Obj, raw

log = logging.getLogger(__name__)

Action = Literal["create", "renew", "acquire", "follow"]


@dataclass(frozen=True)
class Observed:
    """The Lease as last seen, and when (our monotonic clock) it last changed."""

    holder: str
    renew_time: str
    duration: float
    changed_at: float


def decide(observed: Observed | None, exists: bool, me: str, now: float) -> Action:
    """What a candidate does with the Lease it just read (pure)."""
    if not exists:
        return "create"
    assert observed is not None
    if observed.holder == me:
        return "renew"
    if not observed.holder or now - observed.changed_at > observed.duration:
        return "acquire"
    return "follow"


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Candidate `identity` for Lease `namespace/name`; `leading` says whether we lead."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry < renew_deadline < duration:
            raise ValueError("lease timings: need retry < renew deadline < lease duration")
        self._coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew_deadline, self.retry = duration, renew_deadline, retry
        self._clock = clock
        self._observed: Observed | None = None
        self._renewed_at = 0.0
        self.leading = False
        self.changed = asyncio.Event()  # set whenever `leading` flips

    async def run(self) -> None:
        while True:
            try:
                leading = await asyncio.to_thread(self._attempt)
            except ApiException as exc:
                if exc.status != 409:
                    log.warning("event=lease-error lease=%s status=%s", self.name, exc.status)
                leading = False if exc.status == 409 else self._still_leading()
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                log.warning("event=lease-unreachable lease=%s error=%r", self.name, exc)
                leading = self._still_leading()
            self._set(leading)
            await asyncio.sleep(self.retry)

    def _still_leading(self) -> bool:
        return self.leading and self._clock() - self._renewed_at < self.renew_deadline

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("event=%s lease=%s/%s identity=%s",
                     "leader-elected" if leading else "leader-lost",
                     self.namespace, self.name, self.identity)  # fmt: skip
            self.changed.set()

    def _attempt(self) -> bool:
        """One read and, if we may, one write; True when we hold the Lease after it."""
        now = self._clock()
        try:
            lease = raw(self._coord.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT))  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise
            lease = None
        if lease is not None:
            spec = lease.get("spec") or {}
            holder, renew = str(spec.get("holderIdentity") or ""), str(spec.get("renewTime"))
            old = self._observed
            if old is None or (old.holder, old.renew_time) != (holder, renew):
                duration = float(spec.get("leaseDurationSeconds") or self.duration)
                self._observed = Observed(holder, renew, duration, now)
        action = decide(self._observed, lease is not None, self.identity, now)
        if action == "follow":
            return False
        self._write(action, lease)
        self._renewed_at = now
        return True

    def _write(self, action: Action, lease: Obj | None) -> None:
        stamp = micro_time()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": stamp,
        }
        if action == "create":
            spec.update(acquireTime=stamp, leaseTransitions=0)
            body: Any = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
            self._coord.create_namespaced_lease(self.namespace, body,
                                                _request_timeout=REQUEST_TIMEOUT)  # fmt: skip
            return
        assert lease is not None
        if action == "acquire":
            transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0)
            spec.update(acquireTime=stamp, leaseTransitions=transitions + 1)
        patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                 "spec": spec}  # fmt: skip
        self._coord.patch_namespaced_lease(self.name, self.namespace, patch,
                                           _content_type=MERGE_PATCH,
                                           _request_timeout=REQUEST_TIMEOUT)  # fmt: skip
