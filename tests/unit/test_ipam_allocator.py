"""The pure allocator: examples for the rules, hypothesis for the invariants."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import AllocationError
from ipam.allocator import (
    ClusterPool,
    IpamState,
    allocate_node_blocks,
    allocate_pod_ip,
    release_node,
    release_pod_ip,
    usage,
)

net = ipaddress.ip_network
ip = ipaddress.ip_address


def pool(*cidrs: str, v4: int = 24, v6: int = 112) -> ClusterPool:
    return ClusterPool(tuple(net(c) for c in cidrs), v4, v6)


DUAL = pool("10.244.0.0/22", "fd00:10::/110", v4=24, v6=112)


# -- pool validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidrs", "v4", "v6", "message"),
    [
        ((), 24, 112, "at least one CIDR"),
        (("10.0.0.0/24",), 16, 112, "smaller than one /16 node block"),
        (("fd00::/120",), 24, 112, "smaller than one /112 node block"),
        (("10.0.0.0/16", "10.0.128.0/17"), 24, 112, "overlaps 10.0.0.0/16"),
        (("10.0.0.0/16",), 31, 112, "mask_v4: 31 must be 1-30"),
        (("10.0.0.0/16",), 24, 127, "mask_v6: 127 must be 1-126"),
    ],
)
def test_pool_validation_names_the_field(
    cidrs: tuple[str, ...], v4: int, v6: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pool(*cidrs, v4=v4, v6=v6)


def test_pool_allows_same_range_in_both_families_and_counts_blocks() -> None:
    p = pool("10.0.0.0/16", "10.1.0.0/23", "fd00::/64", v4=24, v6=64)
    assert p.families() == (4, 6)
    assert p.total_blocks(4) == 256 + 2
    assert p.total_blocks(6) == 1


# -- node blocks ---------------------------------------------------------------------


def test_node_gets_lowest_free_block_per_family_and_keeps_it() -> None:
    s, a = allocate_node_blocks(IpamState(), DUAL, "a")
    assert a == (net("10.244.0.0/24"), net("fd00:10::/112"))
    s, b = allocate_node_blocks(s, DUAL, "b")
    assert b == (net("10.244.1.0/24"), net("fd00:10::1:0/112"))
    s2, again = allocate_node_blocks(s, DUAL, "a")
    assert again == a and s2 is s  # idempotent: the very same state, nothing to write


def test_released_block_is_reused_lowest_first() -> None:
    s = IpamState()
    for n in "abc":
        s, _ = allocate_node_blocks(s, DUAL, n)
    s = release_node(s, "a")
    s, d = allocate_node_blocks(s, DUAL, "d")
    assert d == (net("10.244.0.0/24"), net("fd00:10::/112"))


def test_several_cidrs_are_used_in_order() -> None:
    p = pool("10.1.0.0/24", "10.0.0.0/23", v4=24)
    s, a = allocate_node_blocks(IpamState(), p, "a")
    s, b = allocate_node_blocks(s, p, "b")
    s, c = allocate_node_blocks(s, p, "c")
    assert [x[0] for x in (a, b, c)] == [net("10.1.0.0/24"), net("10.0.0.0/24"), net("10.0.1.0/24")]


def test_exhaustion_names_pool_counts_and_remedy_and_changes_nothing() -> None:
    p = pool("10.0.0.0/23", v4=24)
    s = IpamState()
    for n in "ab":
        s, _ = allocate_node_blocks(s, p, n)
    with pytest.raises(AllocationError) as e:
        allocate_node_blocks(s, p, "c")
    text = str(e.value)
    for part in ("IPv4", "10.0.0.0/23", "/24 per node", "2 of 2 blocks", "node c", "add a CIDR"):
        assert part in text
    assert "c" not in s.node_blocks


def test_dual_stack_exhaustion_of_one_family_allocates_neither() -> None:
    p = pool("10.0.0.0/24", "fd00::/111", v4=24, v6=112)
    s, _ = allocate_node_blocks(IpamState(), p, "a")
    with pytest.raises(AllocationError, match="IPv4"):
        allocate_node_blocks(s, p, "b")


def test_node_keeps_blocks_when_pool_changes_and_gains_new_family() -> None:
    s, _ = allocate_node_blocks(IpamState(), pool("10.0.0.0/16"), "a")
    s, blocks = allocate_node_blocks(s, pool("10.9.0.0/16", "fd00::/64"), "a")
    assert blocks == (net("10.0.0.0/24"), net("fd00::/112"))


def test_new_blocks_avoid_old_blocks_of_other_sizes() -> None:
    s, _ = allocate_node_blocks(IpamState(), pool("10.0.0.0/16", v4=20), "big")
    s, blocks = allocate_node_blocks(s, pool("10.0.0.0/16", v4=24), "small")
    assert blocks == (net("10.0.16.0/24"),)


@pytest.mark.parametrize("node", ["", "a/b", "../x", "a..b", "-x", "a\n", "x" * 254])
def test_bad_node_names_are_refused(node: str) -> None:
    with pytest.raises(AllocationError, match="node name"):
        allocate_node_blocks(IpamState(), DUAL, node)


# -- pod IPs -------------------------------------------------------------------------


def dual_node() -> IpamState:
    return allocate_node_blocks(IpamState(), DUAL, "a")[0]


def test_pod_ips_skip_network_and_broadcast_and_are_idempotent() -> None:
    p = pool("10.0.0.0/30", v4=30)
    s, _ = allocate_node_blocks(IpamState(), p, "a")
    s, one = allocate_pod_ip(s, "a", "c1", "eth0")
    s, two = allocate_pod_ip(s, "a", "c2", "eth0")
    assert (one, two) == (ip("10.0.0.1"), ip("10.0.0.2"))
    s2, again = allocate_pod_ip(s, "a", "c1", "eth0")
    assert again == one and s2 is s
    with pytest.raises(AllocationError, match=r"block 10.0.0.0/30 of node a is exhausted: 2 of 2"):
        allocate_pod_ip(s, "a", "c3", "eth0")
    s, released = release_pod_ip(s, "a", "c1", "eth0")
    assert released
    assert allocate_pod_ip(s, "a", "c3", "eth0")[1] == ip("10.0.0.1")


def test_dual_stack_interface_holds_one_ip_per_family_and_release_frees_both() -> None:
    s, v4 = allocate_pod_ip(dual_node(), "a", "c1", "eth0", 4)
    s, v6 = allocate_pod_ip(s, "a", "c1", "eth0", 6)
    assert (v4, v6) == (ip("10.244.0.1"), ip("fd00:10::1"))
    assert [u.line() for u in usage(s, DUAL, "a")] == [
        "IPv4: 1/254 allocated from 10.244.0.0/24",
        "IPv6: 1/65535 allocated from fd00:10::/112",
    ]
    s, released = release_pod_ip(s, "a", "c1", "eth0")
    assert released and s.pod_ips == {}
    assert release_pod_ip(s, "a", "c1", "eth0") == (s, False)


def test_pod_ip_errors_say_what_to_do() -> None:
    with pytest.raises(AllocationError, match="node b has no IPv4 block: allocate the node"):
        allocate_pod_ip(dual_node(), "b", "c1", "eth0")
    s, _ = allocate_node_blocks(IpamState(), pool("10.0.0.0/16"), "a")
    with pytest.raises(AllocationError, match="no IPv6 CIDR; add one"):
        allocate_pod_ip(s, "a", "c1", "eth0", 6, pool=pool("10.0.0.0/16"))


def test_release_node_frees_its_pod_ips() -> None:
    s, _ = allocate_pod_ip(dual_node(), "a", "c1", "eth0")
    s = release_node(s, "a")
    assert s == IpamState()


@pytest.mark.parametrize(
    ("cid", "ifname", "what"),
    [
        ("", "eth0", "container ID"),
        ("../etc", "eth0", "container ID"),
        ("a/b", "eth0", "container ID"),
        ("a..b", "eth0", "container ID"),
        ("x" * 257, "eth0", "container ID"),
        ("abc\n", "eth0", "container ID"),
        ("abc", "", "interface name"),
        ("abc", "a/b", "interface name"),
        ("abc", "..", "interface name"),
        ("abc", "e" * 16, "interface name"),
    ],
)
def test_pod_keys_are_validated_strictly(cid: str, ifname: str, what: str) -> None:
    with pytest.raises(AllocationError, match=what):
        allocate_pod_ip(dual_node(), "a", cid, ifname)
    with pytest.raises(AllocationError, match=what):
        release_pod_ip(dual_node(), "a", cid, ifname)


# -- serialisation -------------------------------------------------------------------


def test_json_round_trip_is_versioned() -> None:
    s, _ = allocate_pod_ip(dual_node(), "a", "c1", "eth0")
    doc = json.loads(s.to_json())
    assert doc["version"] == 1
    assert doc["podIPs"] == {"a": {"c1/eth0/v4": "10.244.0.1"}}
    assert IpamState.from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"version": 2}', "version is 2"),
        ('{"version": 1, "nodeBlocks": {"a": "10.0.0.0/24"}}', "malformed"),
        ('{"version": 1, "nodeBlocks": {"a": ["10.0.0.0/33"]}}', "malformed"),
        (
            '{"version": 1, "nodeBlocks": {"a": ["10.0.0.0/16"], "b": ["10.0.1.0/24"]}}',
            "overlaps",
        ),
        (
            '{"version": 1, "nodeBlocks": {"a": ["10.0.0.0/24"], "b": ["10.0.1.0/24"]}, '
            '"podIPs": {"a": {"c/e/v4": "10.0.1.5"}}}',
            "outside the node's blocks",
        ),
        (
            '{"version": 1, "nodeBlocks": {"a": ["10.0.0.0/24"]}, '
            '"podIPs": {"a": {"c/e/v4": "10.0.0.5", "d/e/v4": "10.0.0.5"}}}',
            "held by both",
        ),
        (
            '{"version": 1, "nodeBlocks": {"a": ["10.0.0.0/24"]}, '
            '"podIPs": {"a": {"../e/v4": "10.0.0.5"}}}',
            "container ID",
        ),
        ('{"version": 1, "nodeBlocks": {"../a": ["10.0.0.0/24"]}}', "node name"),
    ],
)
def test_from_json_refuses_bad_documents(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IpamState.from_json(text)


# -- properties ----------------------------------------------------------------------

POOLS = [
    pool("10.0.0.0/29", v4=30),
    pool("10.0.0.0/28", "10.1.0.0/30", v4=30),
    pool("10.0.0.0/27", "fd00::/124", v4=29, v6=126),
    pool("fd00::/123", "fd01::/125", v6=125),
]
NODES = st.sampled_from(["n0", "n1", "n2", "n3", "n4", "n5"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("node"), NODES),
        st.tuples(st.just("release"), NODES),
        st.tuples(
            st.just("pod"),
            NODES,
            st.sampled_from(["c0", "c1", "c2", "c3", "c4", "c5", "c6"]),
            st.sampled_from(["eth0", "net1"]),
            st.sampled_from([4, 6]),
        ),
        st.tuples(st.just("unpod"), NODES, st.sampled_from(["c0", "c1", "c2"]), st.just("eth0")),
    ),
    max_size=60,
)


def brute_lowest_free(p: ClusterPool, family: int, state: IpamState) -> object:
    used = [b for bs in state.node_blocks.values() for b in bs if b.version == family]
    for cidr in p.family_cidrs(family):
        for cand in cidr.subnets(new_prefix=p.mask(family)):
            if not any(cand.overlaps(u) for u in used):
                return cand
    return None


def check_invariants(p: ClusterPool, s: IpamState) -> None:
    assert s.problems() == []
    assert IpamState.from_json(s.to_json()) == s
    for node, blocks in s.node_blocks.items():
        assert all(p.contains(b) and b.prefixlen == p.mask(b.version) for b in blocks)
        assert sorted(b.version for b in blocks) == list(p.families())
        for pod_ip in s.pod_ips.get(node, {}).values():
            block = next(b for b in blocks if pod_ip in b)
            assert pod_ip != block.network_address
            assert block.version == 6 or pod_ip != block.broadcast_address
    assert set(s.pod_ips) <= set(s.node_blocks)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(POOLS), OPS)
def test_random_operations_keep_every_invariant(p: ClusterPool, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    s = IpamState()
    for op in ops:
        before = s
        try:
            if op[0] == "node":
                expected = {
                    f: brute_lowest_free(p, f, s)
                    for f in p.families()
                    if not any(b.version == f for b in s.node_blocks.get(op[1], ()))
                }
                s, blocks = allocate_node_blocks(s, p, op[1])
                assert set(expected.values()) <= set(blocks)  # lowest free, as brute force
                assert allocate_node_blocks(s, p, op[1]) == (s, blocks)  # idempotent
            elif op[0] == "release":
                s = release_node(s, op[1])
                assert op[1] not in s.node_blocks and op[1] not in s.pod_ips
            elif op[0] == "pod":
                s, got = allocate_pod_ip(s, *op[1:])
                assert allocate_pod_ip(s, *op[1:]) == (s, got)
                assert got.version == op[4]
            else:
                s, _ = release_pod_ip(s, *op[1:])
        except AllocationError as e:
            assert s is before  # a refused request changes nothing
            text = str(e)
            if "cluster pool" in text:  # exhaustion must be real
                assert any(brute_lowest_free(p, f, s) is None for f in p.families())
            elif "exhausted" in text:
                block = next(b for b in s.node_blocks[op[1]] if b.version == op[4])
                held = [a for a in s.pod_ips.get(op[1], {}).values() if a in block]
                assert len(held) == block.num_addresses - (2 if block.version == 4 else 1)
            else:
                assert "has no" in text
        check_invariants(p, s)


@settings(max_examples=100, deadline=None)
@given(st.lists(NODES, unique=True, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_allocation_is_deterministic_and_release_order_is_irrelevant(
    nodes: list[str], rnd: random.Random
) -> None:
    p = pool("10.0.0.0/26", "fd00::/120", v4=29, v6=124)
    s1 = s2 = IpamState()
    for n in nodes:
        s1, _ = allocate_node_blocks(s1, p, n)
        s2, _ = allocate_node_blocks(s2, p, n)
    assert s1 == s2
    rnd.shuffle(nodes)
    for n in nodes:
        s1 = release_node(s1, n)
    assert s1 == IpamState()
