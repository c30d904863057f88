"""Datapath figures for GET /metrics: whether the BPF programs carry pod traffic, their
per-outcome packet counters (summed over CPUs) and how full each pinned map is.

Registered with `bgpd.api.metrics.add_collector` by the runner; every family is present on
every scrape (empty without BPF), so dashboards and alerts can rely on the names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bgpd.reconcile.datapath import DatapathSync


class DatapathCollector(Collector):
    def __init__(self, datapath: DatapathSync) -> None:
        self._datapath = datapath

    def collect(self) -> Iterable[Metric]:
        info = self._datapath.describe()
        bpf = GaugeMetricFamily(
            "kroute_datapath_bpf",
            "1 when pod traffic takes kroute's BPF programs, 0 with kernel forwarding.",
        )
        bpf.add_metric([], 1.0 if info.get("hostRouting") == "BPF" else 0.0)
        packets = CounterMetricFamily(
            "kroute_datapath_packets",
            "Packets the BPF programs handled, by outcome (forwarded, dropped by reason).",
            labels=["outcome"],
        )
        for outcome, count in sorted(info.get("counters", {}).items()):
            packets.add_metric([outcome], float(count))
        entries = GaugeMetricFamily(
            "kroute_datapath_map_entries", "Entries in each pinned BPF map.", labels=["map"]
        )
        capacity = GaugeMetricFamily(
            "kroute_datapath_map_capacity", "Entries each pinned BPF map can hold.", labels=["map"]
        )
        for name, table in sorted(info.get("maps", {}).items()):
            entries.add_metric([name], float(table["entries"]))
            capacity.add_metric([name], float(table["max"]))
        yield from (bpf, packets, entries, capacity)
