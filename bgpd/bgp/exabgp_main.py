"""exabgp's own entry point (`python -m bgpd.bgp.exabgp_main server CONF`) with one
behaviour changed: a teardown asked for through the API, kroute's max-prefix shutdown,
sends its NOTIFICATION Cease (RFC 4486) also when graceful restart was negotiated.

exabgp 5.0 closes every session silently once graceful restart is negotiated
(`Peer._main`), which is right for a restart of exabgp but turns an API teardown into
what the peer reads as our restart: it keeps our routes as stale, reconnects at once and
never learns why. For the one session an API teardown ends, the neighbor's graceful
restart setting reads off, so exabgp takes its own NOTIFICATION path; the setting is back
when that session has closed, before the next OPEN is built. The change wraps two methods
of exabgp's `Peer` (the version is pinned in pyproject.toml) and
tests/integration/test_import_policy.py checks it on the peer's side.
"""

from __future__ import annotations

import sys
from typing import Any

from exabgp.application.main import main
from exabgp.reactor.peer import Peer

_teardown = Peer.teardown
_close = Peer._close
_UNSET = object()


def teardown(self: Any, code: int, restart: bool = True) -> None:
    """`neighbor X teardown CODE` from the API: end this session with a NOTIFICATION."""
    capability = self.neighbor["capability"]
    if getattr(self, "_kroute_graceful", _UNSET) is _UNSET:
        self._kroute_graceful = capability["graceful-restart"]
    capability["graceful-restart"] = False
    _teardown(self, code, restart)


def close(self: Any, message: str = "", error: Any = "") -> None:
    graceful = getattr(self, "_kroute_graceful", _UNSET)
    if graceful is not _UNSET:
        self.neighbor["capability"]["graceful-restart"] = graceful
        self._kroute_graceful = _UNSET
    _close(self, message, error)


Peer.teardown = teardown
Peer._close = close

if __name__ == "__main__":
    sys.exit(main())
