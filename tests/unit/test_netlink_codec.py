"""The route message codec: what encode_route writes, parse_route reads back."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from datapath.netlink_codec import HDR, RTM_NEWROUTE, encode_route, parse_route
from datapath.routes import Address, KernelRoute


@st.composite
def routes(draw: st.DrawFn) -> tuple[KernelRoute, int]:
    v6 = draw(st.booleans())
    bits, plen = (128, draw(st.integers(0, 128))) if v6 else (32, draw(st.integers(0, 32)))
    make = ipaddress.IPv6Network if v6 else ipaddress.IPv4Network
    raw = draw(st.integers(0, 2**bits - 1)) >> (bits - plen) << (bits - plen) if plen else 0
    prefix = make((raw, plen))
    hop: st.SearchStrategy[Address] = st.integers(1, 2**bits - 1).map(
        ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    )
    hops: list[Address] = draw(st.lists(hop, max_size=4, unique=True))
    oif = draw(st.sampled_from([0, 7])) if hops else 0
    return KernelRoute(prefix, tuple(hops), "kroute.vxlan" if oif else None), oif


@given(routes())
def test_parse_reads_back_what_encode_wrote(case: tuple[KernelRoute, int]) -> None:
    route, oif = case
    msg = bytearray(encode_route(route, False, 1, oif))
    length, mtype = HDR.unpack_from(msg, 0)[:2]
    assert length == len(msg) and mtype == RTM_NEWROUTE
    parsed = parse_route(msg, 16, len(msg), route.prefix.version, {})
    assert parsed is not None
    # The device comes back as its ifindex (the socket names it after a dump).
    assert parsed == (KernelRoute(route.prefix, route.nexthops), oif)
