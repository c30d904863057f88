"""Versioned JSON state documents (IPAM, LB-IPAM): one loader, one error wording."""

from __future__ import annotations

import json
from typing import Any


def load_versioned(text: str, version: int) -> dict[str, Any]:
    """The document as a dict; ValueError says what is wrong (not JSON, other version)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != version:
        found = doc.get("version") if isinstance(doc, dict) else None
        raise ValueError(f"version is {found!r}, this kroute reads {version}")
    return doc
