"""`kroute status` lines for `cluster.source: kubernetes` (no kubernetes import: the CLI
stays light)."""

from __future__ import annotations

from typing import Any


def kube_status_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    ipam = status.get("ipam") or {}
    watches: dict[str, str] = ipam.get("apiServer") or {}
    if not watches:
        return []
    away = sorted(name for name, state in watches.items() if state != "watching")
    text = (
        f"UNREACHABLE for {', '.join(away)} (keeping the last state, nothing withdrawn)"
        if away
        else f"watching {', '.join(sorted(watches))}"
    )
    lines = [("Kubernetes", text)]
    if ipam.get("problems"):
        lines.append(("Kubernetes", f"{len(ipam['problems'])} objects ignored (see the log)"))
    return lines
