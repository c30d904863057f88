"""BGP sessions as the daemon tracks them: state, graceful restart, import policy,
max-prefix and counters, fed by speaker events.

Graceful restart, receiving side (RFC 4724 4.2): a session that closed without a
NOTIFICATION from a peer that advertised the capability keeps its routes as stale
for the restart time it advertised. When the peer is back the restart timer stops, and
End-of-RIB, or the stale-path timer if none comes, sweeps what it did not send again.
Anything else (a NOTIFICATION, hold timer expiry, no capability) loses the peer's routes
at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bgpd.bgp.events import EndOfRib, PathAttributes, PeerOpen, PeerState, RoutesUpdate
from bgpd.bgp.peers import Peer
from bgpd.bgp.policy import LocalFacts, import_verdict
from bgpd.bgp.rib import Rib

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

STATE_NAMES = {"up": "established", "connected": "connect", "down": "idle"}
CEASE_MAX_PREFIX = 1  # RFC 4486 3: Maximum Number of Prefixes Reached (2: admin shutdown)


@dataclass
class PeerStatus:
    """What the daemon knows about one neighbor's session."""

    peer: Peer
    state: str = "idle"
    since: float | None = None
    info: str = ""
    restart_time: int | None = None
    eor_received: bool = False
    shutdown: str = ""  # why kroute keeps this session down (max-prefix)
    rejected: Counter[str] = field(default_factory=Counter)
    updates: int = 0
    stale_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    """The restart timer: running while the peer is away with its routes kept stale."""
    stale_path_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    """Running once the peer is back, until its End-of-RIB."""

    def cancel_timers(self) -> None:
        for timer in (self.stale_timer, self.stale_path_timer):
            if timer is not None:
                timer.cancel()
        self.stale_timer = self.stale_path_timer = None

    @property
    def address(self) -> IPAddress:
        return self.peer.address


class Sessions:
    """The peer table. `on_change` is called whenever the RIB changed."""

    def __init__(
        self,
        peers: tuple[Peer, ...],
        rib: Rib,
        local: LocalFacts,
        *,
        on_change: Callable[[], None],
        teardown: Callable[[IPAddress, int], None],
        clock: Callable[[], float],
        stale_path_time: float,
    ) -> None:
        self.stale_path_time = stale_path_time
        self.peers: dict[IPAddress, PeerStatus] = {p.address: PeerStatus(p) for p in peers}
        self.rib = rib
        self._local = local
        self._on_change = on_change
        self._teardown = teardown
        self._clock = clock
        for status in self.peers.values():
            rib.peer(status.address).ebgp = status.peer.ebgp

    def set_peers(self, peers: tuple[Peer, ...]) -> None:
        """Membership or config changed: new peers start idle, removed ones lose their
        routes at once (they are gone, not restarting), changed ones keep their state."""
        wanted = {p.address: p for p in peers}
        changed = False
        for address in [a for a in self.peers if a not in wanted]:
            self.peers.pop(address).cancel_timers()
            changed |= self.rib.forget(address)
            log.info("event=peer-removed peer=%s", address)
        for address, peer in wanted.items():
            current = self.peers.get(address)
            if current is None:
                self.peers[address] = PeerStatus(peer)
                log.info("event=peer-added peer=%s type=%r", address, peer.type)
            elif current.peer != peer:
                current.peer = peer
                changed |= self._rejudge(current)  # its import policy may differ
            self.rib.peer(address).ebgp = peer.ebgp
        if changed:
            self._on_change()

    @property
    def local(self) -> LocalFacts:
        return self._local

    @local.setter
    def local(self, local: LocalFacts) -> None:
        """New facts about this node and its cluster: every peer's routes are judged again."""
        if local == self._local:
            return
        self._local = local
        if any([self._rejudge(peer) for peer in self.peers.values()]):
            self._on_change()

    def _rejudge(self, peer: PeerStatus) -> bool:
        """Judge what `peer` sent again under today's policy (not counted as refusals:
        those count UPDATEs). A max-prefix shut peer keeps nothing."""
        if peer.shutdown:
            return False
        changed = self.rib.rejudge(
            peer.address,
            lambda prefix, attrs: import_verdict(prefix, attrs, peer.peer, self._local),
        )
        limit = peer.peer.imports.max_prefix
        if limit and self.rib.received_count(peer.address) > limit:
            self._shut_max_prefix(peer, limit)
            changed = True
        return changed

    def all_eor(self) -> bool:
        """Every peer that will send End-of-RIB has: a max-prefix shut one never will."""
        return all(p.eor_received or p.shutdown for p in self.peers.values())

    def cancel_timers(self) -> None:
        for peer in self.peers.values():
            peer.cancel_timers()

    def on_state(self, event: PeerState) -> None:
        peer = self.peers.get(event.peer)
        if peer is None:
            return
        state = STATE_NAMES[event.state]
        if state != peer.state:
            peer.since = self._clock()
        peer.state = state
        if event.state == "up":
            peer.info = "Established"
            peer.eor_received = False
            if peer.stale_timer is not None:  # back within its restart time
                peer.stale_timer.cancel()
                loop = asyncio.get_running_loop()
                peer.stale_timer = None
                peer.stale_path_timer = loop.call_later(
                    self.stale_path_time, self._stale_expired, peer
                )
            if peer.shutdown:
                self._teardown(peer.address, CEASE_MAX_PREFIX)
        elif event.state == "down":
            peer.info = peer.shutdown or event.reason
            self._on_down(peer, event.reason)

    def _on_down(self, peer: PeerStatus, reason: str) -> None:
        if peer.stale_path_timer is not None:  # back, then gone again before End-of-RIB
            peer.stale_path_timer.cancel()
            peer.stale_path_timer = None
        if peer.stale_timer is not None:
            # Already waiting for this peer's restart (reconnect attempts fail too): what
            # it re-sent meanwhile turns stale again, the deadline stays.
            self.rib.mark_stale(peer.address)
            return
        graceful = peer.restart_time is not None and not reason.startswith("notification")
        if graceful and not peer.shutdown and self.rib.received_count(peer.address):
            assert peer.restart_time is not None
            self.rib.mark_stale(peer.address)
            loop = asyncio.get_running_loop()
            peer.stale_timer = loop.call_later(peer.restart_time, self._stale_expired, peer)
            log.info(
                "event=peer-restarting peer=%s stale=%d restart_time=%ss",
                peer.address,
                self.rib.stale_count(peer.address),
                peer.restart_time,
            )
        elif self.rib.clear(peer.address):
            log.info("event=peer-routes-removed peer=%s reason=%r", peer.address, reason)
            self._on_change()

    def _stale_expired(self, peer: PeerStatus) -> None:
        peer.stale_timer = peer.stale_path_timer = None
        if self.rib.drop_stale(peer.address):
            log.info("event=stale-routes-expired peer=%s", peer.address)
            self._on_change()

    def on_open(self, event: PeerOpen) -> None:
        peer = self.peers.get(event.peer)
        if peer is None:
            return
        peer.restart_time = event.restart_time
        self.rib.set_router_id(event.peer, event.router_id)

    def on_update(self, event: RoutesUpdate) -> None:
        peer = self.peers.get(event.peer)
        if peer is None or peer.shutdown:
            return
        peer.updates += 1
        if event.malformed:
            peer.rejected["malformed update"] += len(event.malformed)
            log.warning(
                "event=update-treat-as-withdraw peer=%s prefixes=%d reason=%r",
                peer.address,
                len(event.malformed),
                event.malformed_reason,
            )

        def verdict(prefix: Network, attrs: PathAttributes) -> str | None:
            reason = import_verdict(prefix, attrs, peer.peer, self._local)
            if reason is not None:
                peer.rejected[reason] += 1
            return reason

        changed = self.rib.apply(event, verdict)
        limit = peer.peer.imports.max_prefix
        if limit and self.rib.received_count(peer.address) > limit:
            self._shut_max_prefix(peer, limit)
            changed = True
        if changed:
            self._on_change()

    def _shut_max_prefix(self, peer: PeerStatus, limit: int) -> None:
        """Too many prefixes: drop them all and keep the session down (Cease 2)."""
        peer.shutdown = f"max-prefix {limit} exceeded; session shut"
        peer.rejected["max-prefix exceeded"] += 1
        peer.info = peer.shutdown
        dropped = list(self.rib.peer(peer.address).routes)
        self.rib.clear(peer.address)
        for prefix in dropped:  # so `kroute routes` can say why they are gone
            self.rib.peer(peer.address).rejected[prefix] = "max-prefix exceeded"
        self._teardown(peer.address, CEASE_MAX_PREFIX)
        log.warning("event=peer-max-prefix peer=%s limit=%d action=shutdown", peer.address, limit)

    def on_eor(self, event: EndOfRib) -> None:
        peer = self.peers.get(event.peer)
        if peer is None:
            return
        peer.eor_received = True
        peer.cancel_timers()
        if self.rib.drop_stale(event.peer):
            self._on_change()
