"""bgpd.api.datapath_metrics: the datapath's families on a scrape, with BPF and without."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bgpd.api.datapath_metrics import DatapathCollector
from bgpd.reconcile.datapath import DatapathSync
from bgpd.reconcile.host import StaticHost
from tests.fakes.bpf import FakeBpfDatapath
from tests.unit.test_datapath_sync import bpf_sync, config, view


def scrape(sync: DatapathSync) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatapathCollector(sync))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples} for f in families}


def test_bpf_counters_and_map_fill() -> None:
    sync, fake = bpf_sync(StaticHost(view()))
    fake.counter_values.update({"forwarded_remote": 12, "dropped_no_route": 3})
    sync.add_pod("10.244.1.20", "kr9")
    families = scrape(sync)
    assert families["kroute_datapath_bpf"] == {(): 1.0}
    assert families["kroute_datapath_packets"][(("outcome", "forwarded_remote"),)] == 12
    assert families["kroute_datapath_packets"][(("outcome", "dropped_no_route"),)] == 3
    assert families["kroute_datapath_map_entries"][(("map", "local_pods"),)] == 1
    assert families["kroute_datapath_map_capacity"][(("map", "local_pods"),)] > 1


def test_without_bpf_every_family_is_there_and_empty() -> None:
    sync = DatapathSync(config(), StaticHost(view()), lambda _: FakeBpfDatapath())
    sync.start()
    families = scrape(sync)
    assert families["kroute_datapath_bpf"] == {(): 0.0}
    for name in ("kroute_datapath_packets", "kroute_datapath_map_entries"):
        assert families[name] == {}
