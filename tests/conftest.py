"""Shared fixtures: unique names for namespaces and labs, so runs never collide."""

from __future__ import annotations

import secrets

import pytest


@pytest.fixture
def unique_name() -> str:
    """A short lab/namespace prefix unique to this test (interface names max 15 chars)."""
    return "t" + secrets.token_hex(3)
