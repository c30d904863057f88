"""Labs for integration tests: uniquely named, always torn down, also on failure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import pytest

from lab import lab as labmod


class LabFactory(Protocol):
    def __call__(
        self,
        nodes: int = 3,
        *,
        upstream: str | None = None,
        reflectors: int = 0,
        store: str = "file",
        datapath: str = "bpf",
        subnets: int = 1,
        overlay: str = "never",
    ) -> labmod.Lab: ...


@pytest.fixture
def make_lab(unique_name: str) -> Iterator[LabFactory]:
    """Build labs on demand (each with its own name); all are removed at the end."""
    made: list[str] = []

    def make(
        nodes: int = 3,
        *,
        upstream: str | None = None,
        reflectors: int = 0,
        store: str = "file",
        datapath: str = "bpf",
        subnets: int = 1,
        overlay: str = "never",
    ) -> labmod.Lab:
        name = f"{unique_name}{len(made)}"
        made.append(name)
        return labmod.up(
            name,
            nodes,
            timeout=90,
            say=lambda _: None,
            upstream=upstream,
            reflectors=reflectors,
            store=store,
            datapath=datapath,
            subnets=subnets,
            overlay=overlay,
        )

    try:
        yield make
    finally:
        for name in made:
            labmod.down(name, say=lambda _: None)


@pytest.fixture
def lab(make_lab: LabFactory) -> labmod.Lab:
    """The plain three-node lab."""
    return make_lab(3)
