"""The cluster-wide LB-IPAM document: applying and deleting pools and services,
validation, JSON, and allocation rounds run by several nodes in any order."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.cli.lb import read_documents
from common.errors import ConfigError
from lbipam import DocumentError, parse_pools, parse_services
from lbipam.pools import Network
from lbipam.shared import (
    LbDocument,
    ReadOnlyObjectError,
    Round,
    UnknownObjectError,
    allocation_round,
    apply_pools,
    apply_services,
    delete_pool,
    delete_service,
    touching,
)

BLUE = {"name": "blue", "blocks": [{"cidr": "198.51.100.0/29"}]}
GREEN = {"name": "green", "blocks": [{"start": "198.51.100.4", "stop": "198.51.100.20"}]}
WWW = {"namespace": "web", "name": "www", "nodes": ["n1"]}
CONFIG = {"red": "the config file (loadBalancer.pools)"}


def round_(doc: LbDocument, now: float = 100.0, config_pools: Any = (), **kw: Any) -> Round:
    return allocation_round(
        doc,
        config_pools=parse_pools(list(config_pools)),
        config_services=parse_services(kw.pop("config_services", [])),
        every_node=("n1", "n2"),
        in_use=kw.pop("in_use", ()),
        now=now,
    )


def test_apply_creates_then_configures_and_keeps_the_creation_time() -> None:
    doc, changes = apply_pools(LbDocument(), [BLUE], 10.0, CONFIG)
    assert changes == {"blue": "created"} and doc.pools["blue"].created == 10.0
    same, changes = apply_pools(doc, [BLUE], 20.0, CONFIG)
    assert changes == {"blue": "unchanged"} and same == doc
    wider = {**BLUE, "blocks": [{"cidr": "198.51.100.0/28"}]}
    doc, changes = apply_pools(doc, [wider, GREEN], 30.0, CONFIG)
    assert changes == {"blue": "configured", "green": "created"}
    assert doc.pools["blue"].created == 10.0 and doc.pools["green"].created == 30.0


def test_a_bad_file_is_refused_whole_naming_each_field() -> None:
    bad = {"name": "bad", "blocks": [{"cidr": "198.51.100.1/24"}]}
    with pytest.raises(DocumentError) as err:
        apply_pools(LbDocument(), [GREEN, bad, {**BLUE, "created": 5}, {"blocks": []}], 1.0, {})
    assert err.value.errors == [
        "pool bad.blocks[0].cidr: '198.51.100.1/24' has host bits set; use 198.51.100.0/24",
        "pool blue.created: set by the store when first applied; remove it",
        "pools[3].blocks: required; list at least one {cidr: ...}",
        "pools[3].name: required; set it",
    ]


def test_config_objects_are_read_only_and_names_unique_per_file() -> None:
    with pytest.raises(DocumentError, match=r"pool red: pool red comes from the config file"):
        apply_pools(LbDocument(), [{**BLUE, "name": "red"}], 1.0, CONFIG)
    with pytest.raises(DocumentError, match=r"given twice"):
        apply_pools(LbDocument(), [BLUE, BLUE], 1.0, {})
    with pytest.raises(ReadOnlyObjectError, match="remove it there and reload"):
        delete_pool(LbDocument(), "red", CONFIG)
    with pytest.raises(UnknownObjectError, match="kroute pools"):
        delete_pool(LbDocument(), "blue", CONFIG)
    with pytest.raises(DocumentError, match=r"service web/www.ports\[0\]"):
        apply_services(LbDocument(), [{**WWW, "ports": [{"prot": 1}]}], {})
    with pytest.raises(ReadOnlyObjectError):
        delete_service(LbDocument(), "web/www", {"web/www": "the config file"})


def test_document_json_round_trip_and_corruption() -> None:
    doc, _ = apply_pools(LbDocument(), [BLUE], 10.0, {})
    doc, _ = apply_services(doc, [WWW], {})
    doc = round_(doc).document
    assert doc.assignments.assignments["web/www"] == (ipaddress.ip_address("198.51.100.1"),)
    assert LbDocument.from_json(doc.to_json()) == doc
    for broken in ("{", '{"version": 9}', '{"version": 1, "pools": {"x": {}}}'):
        with pytest.raises(ValueError):
            LbDocument.from_json(broken)


def test_overlap_newer_pool_conflicts_and_delete_revokes() -> None:
    doc, _ = apply_pools(LbDocument(), [BLUE], 10.0, {})
    doc, _ = apply_pools(doc, [GREEN], 20.0, {})  # overlaps blue, and is newer
    doc, _ = apply_services(doc, [WWW], {})
    done = round_(doc)
    assert done.result.pools["green"].conflicting_with == "blue"
    assert done.result.pools["blue"].conflicting_with is None
    assert round_(done.document).document == done.document  # a second round changes nothing
    doc, _ = delete_pool(done.document, "blue", {})
    done = round_(doc)
    assert done.result.revoked == {"web/www": (ipaddress.ip_address("198.51.100.1"),)}
    assert done.result.services["web/www"].ips == (ipaddress.ip_address("198.51.100.4"),)


def test_config_pools_are_stamped_once_in_file_order() -> None:
    red = {"name": "red", "blocks": [{"cidr": "198.51.100.0/29"}]}
    amber = {"name": "amber", "blocks": [{"cidr": "198.51.100.0/30"}]}  # listed later: newer
    done = round_(LbDocument(), now=50.0, config_pools=[red, amber])
    assert done.result.pools["amber"].conflicting_with == "red"
    later = round_(done.document, now=99.0, config_pools=[red, amber])
    assert later.document.pools_seen == done.document.pools_seen
    assert later.document.pools_seen["red"] == 50.0


def test_an_explicit_creation_time_wins_over_first_seen() -> None:
    """Pools from the Kubernetes API carry their creationTimestamp as `created`."""
    old = {"name": "zz-old", "blocks": [{"cidr": "198.51.100.0/29"}], "created": 5.0}
    new = {"name": "aa-new", "blocks": [{"cidr": "198.51.100.0/30"}], "created": 9.0}
    done = round_(LbDocument(), now=50.0, config_pools=[new, old])
    assert done.result.pools["aa-new"].conflicting_with == "zz-old"
    assert [p.created for p in done.pools] == [9.0, 5.0]


def test_a_config_service_shadows_an_applied_one_of_the_same_name() -> None:
    doc, _ = apply_pools(LbDocument(), [BLUE], 10.0, {})
    doc, _ = apply_services(doc, [{**WWW, "nodes": ["n2"]}], {})
    done = round_(doc, config_services=[WWW])
    assert [s.nodes for s in done.services] == [("n1",)]
    assert any("config file's service" in p for p in done.problems)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["apply", "delete", "round"]), st.integers(0, 5), st.sampled_from([0, 1])
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_nodes_rounding_in_any_order_never_give_one_ip_to_two_services(ops: Any) -> None:
    """Two nodes apply and delete services and run rounds interleaved; each step is one
    transaction on the shared document. No address is ever held twice, and after a
    final round on each node both compute the same document."""
    doc, _ = apply_pools(LbDocument(), [BLUE], 1.0, {})
    in_use: tuple[list[Network], ...] = ([], [ipaddress.ip_network("198.51.100.2/32")])
    # node 1 sees a route node 0 does not
    for op, i, node in ops:
        svc = {"namespace": "web", "name": f"s{i}"}
        if op == "apply":
            doc, _ = apply_services(doc, [svc], {})
        elif op == "delete":
            if f"web/s{i}" in doc.services:
                doc, _ = delete_service(doc, f"web/s{i}", {})
        else:
            doc = round_(doc, in_use=in_use[node]).document
            assert set(doc.assignments.assignments) <= set(doc.services)  # deleted: released
        held = [ip for ips in doc.assignments.assignments.values() for ip in ips]
        assert len(held) == len(set(held))
    first = round_(doc, in_use=in_use[0]).document
    assert round_(first, in_use=in_use[1]).document == first


def test_cli_reads_one_document_a_list_or_several(tmp_path: Any) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("name: a\n---\n- name: b\n- name: c\n")
    assert [d["name"] for d in read_documents(str(path))] == ["a", "b", "c"]
    path.write_text('[{"name": "a"}]')
    assert read_documents(str(path)) == [{"name": "a"}]
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML or JSON"):
        read_documents(str(path))
    with pytest.raises(ConfigError, match="cannot read it"):
        read_documents(str(tmp_path / "missing.yaml"))


def test_only_routes_touching_a_pool_matter_to_allocation() -> None:
    pools = parse_pools([BLUE, GREEN])
    net = ipaddress.ip_network
    routes = [net("198.51.100.2/32"), net("0.0.0.0/0"), net("198.51.100.16/28"),
              net("198.51.100.32/27"), net("203.0.113.0/24"), net("2001:db8::/32")]  # fmt: skip
    assert touching(routes, pools) == {net("198.51.100.2/32"), net("0.0.0.0/0"),
                                       net("198.51.100.16/28")}  # fmt: skip
    assert touching(routes, ()) == frozenset()
    many = [net(f"10.{i // 256}.{i % 256}.0/24") for i in range(5000)]
    doc, _ = apply_pools(LbDocument(), [BLUE], 10.0, {})
    doc, _ = apply_services(doc, [WWW], {})
    done = round_(doc, in_use=[*many, net("198.51.100.1/32")])  # the network routes .1
    assert done.result.services["web/www"].ips == (ipaddress.ip_address("198.51.100.2"),)
