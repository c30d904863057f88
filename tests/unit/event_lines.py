"""Edited ExaBGP lines for the event parser tests: a real line re-serialised after a change,
and the event types parse_line may return."""

from __future__ import annotations

import json
from typing import Any

from bgpd.bgp.events import (
    Ack,
    EndOfRib,
    Ignored,
    Malformed,
    Notification,
    PeerOpen,
    PeerState,
    RoutesUpdate,
)
from tests.unit.conftest import (
    STATE_DOWN_LINE,
    UPDATE_LINE,
)

EVENT_TYPES = (Ack, PeerState, PeerOpen, RoutesUpdate, EndOfRib, Notification, Ignored, Malformed)


def with_changes(line: str, change: Any) -> str:
    """The real `line` re-serialised after `change(data)` edited it in place."""
    data = json.loads(line)
    change(data)
    return json.dumps(data)


def update_line(update: dict[str, Any]) -> str:
    def change(data: dict[str, Any]) -> None:
        data["neighbor"]["message"] = {"update": update}

    return with_changes(UPDATE_LINE, change)


def state_line(state: str, reason: str | None = None, peer: object = "10.77.0.2") -> str:
    def change(data: dict[str, Any]) -> None:
        data["neighbor"]["state"] = state
        data["neighbor"]["address"]["peer"] = peer
        if reason is None:
            data["neighbor"].pop("reason", None)
        else:
            data["neighbor"]["reason"] = reason

    return with_changes(STATE_DOWN_LINE, change)
