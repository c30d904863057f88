"""exabgp.conf as exabgp itself reads it: whatever a peer's description or password
holds, the rendered file has exactly the neighbors and options kroute meant (no text
of a user's can add configuration), read with exabgp's own configuration loader."""

from __future__ import annotations

import base64
import functools
import ipaddress
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.bgp.exabgp_conf import SpeakerSpec, render_config, safe_description
from bgpd.bgp.peers import EXTERNAL, Peer
from bgpd.config.peers import DESCRIPTION_MAX

ME = ipaddress.IPv4Address("192.0.2.1")
PEER_A = ipaddress.IPv4Address("192.0.2.2")
PEER_B = ipaddress.IPv4Address("192.0.2.3")
SOCKET = "/run/kroute/exabgp.sock"


@functools.cache
def _quiet_exabgp_logger() -> None:
    """Once per process, and silent: exabgp's logger keeps the stream it was set up
    with (pytest's capture of one test), which is closed by the next."""
    from exabgp.environment import getenv
    from exabgp.logger import log

    env = getenv()
    env.log.enable = False
    env.log.level = "CRITICAL"
    log.init(env)


def parse_exabgp(text: str) -> list[Any]:
    """The neighbors exabgp's configuration loader makes of `text` (in this process)."""
    from exabgp.configuration.configuration import Configuration

    _quiet_exabgp_logger()
    loader = Configuration([text], text=True)
    assert loader.reload(), f"exabgp refused the config: {loader.error}"
    return list(loader.neighbors.values())


def peer(address: ipaddress.IPv4Address, name: str, password_file: str | None = None) -> Peer:
    return Peer(
        address=address,
        asn=65000,
        name=name,
        type=EXTERNAL,
        ebgp=True,
        rr_client=False,
        hold_time=90,
        graceful_restart=True,
        password_file=password_file,
    )


def spec(*neighbors: Peer) -> SpeakerSpec:
    return SpeakerSpec(
        router_id=ME,
        local_address=ME,
        asn=64512,
        hold_time=90,
        port=179,
        restart_time=120,
        neighbors=neighbors,
    )


def test_a_quote_in_a_description_does_not_inject_configuration(tmp_path: Path) -> None:
    secret = tmp_path / "md5"
    secret.write_text("right")
    injected = 'core-1"; md5-password "evil'
    neighbors = parse_exabgp(
        render_config(spec(peer(PEER_A, injected), peer(PEER_B, "b", str(secret))), SOCKET)
    )
    assert [str(n["peer-address"]) for n in neighbors] == [str(PEER_A), str(PEER_B)]
    assert neighbors[0]["md5-password"] is None
    assert neighbors[0]["description"] == safe_description(injected)
    assert '"' not in neighbors[0]["description"]


def test_the_password_goes_base64_and_exabgp_decodes_it(tmp_path: Path) -> None:
    secret = tmp_path / "md5"
    secret.write_text('p"a\\ss; #x {')
    [neighbor] = parse_exabgp(render_config(spec(peer(PEER_A, "a", str(secret))), SOCKET))
    assert neighbor["md5-base64"] is True
    assert base64.b64decode(neighbor["md5-password"]) == b'p"a\\ss; #x {'


def test_the_description_keeps_plain_text_and_is_cut_to_length() -> None:
    assert safe_description("core-1 (rack 4), AS65000: uplink/a@b+c=d") == (
        "core-1 (rack 4), AS65000: uplink/a@b+c=d"
    )
    assert safe_description("a\"b'c\\d;e{f}g#h\ni") == "a_b_c_d_e_f_g_h_i"
    assert len(safe_description("x" * 1000)) == DESCRIPTION_MAX


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("runDir", {"socket": "/run/kroute dir/exabgp.sock"}),
        ("runDir", {"socket": '/run/k"; run /bin/sh;'}),
        ("the Python interpreter", {"python": "/opt/my python/bin/python3"}),
    ],
)
def test_a_path_that_cannot_go_into_exabgp_conf_is_refused(
    field: str, change: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if "python" in change:
        monkeypatch.setattr(sys, "executable", change["python"])
    with pytest.raises(ValueError, match=field):
        render_config(spec(peer(PEER_A, "a")), change.get("socket", SOCKET))


@pytest.mark.parametrize("content", ["", "  \n", "two\nlines", "x" * 81])
def test_a_password_file_changed_since_load_fails_the_render(tmp_path: Path, content: str) -> None:
    """The file is read again when rendering: what load refused is refused here too,
    naming the file and never its content."""
    secret = tmp_path / "md5"
    secret.write_text(content)
    with pytest.raises(ValueError, match=str(secret)) as caught:
        render_config(spec(peer(PEER_A, "a", str(secret))), SOCKET)
    assert content.strip() == "" or content not in str(caught.value)


PASSWORDS = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=20
).filter(lambda s: s.strip() == s and s)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(st.text(max_size=200), min_size=1, max_size=3), password=PASSWORDS)
def test_fuzz_exabgp_reads_what_was_meant(names: list[str], password: str) -> None:
    """Arbitrary descriptions (node names, `bgp.peers[].description`) and passwords:
    exabgp finds every neighbor once, with the description and the password meant,
    and nothing else a user wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "md5"
        secret.write_text(password)
        peers = [
            peer(ipaddress.IPv4Address(int(PEER_A) + i), name, str(secret))
            for i, name in enumerate(names)
        ]
        plain = replace(peers[0], address=ipaddress.IPv4Address("192.0.2.100"), password_file=None)
        neighbors = parse_exabgp(render_config(spec(*peers, plain), SOCKET))
    assert [str(n["peer-address"]) for n in neighbors] == [str(p.address) for p in (*peers, plain)]
    for neighbor, wanted in zip(neighbors, (*peers, plain), strict=True):
        assert neighbor["description"] == safe_description(wanted.name)
        assert int(neighbor["peer-as"]) == 65000 and int(neighbor["local-as"]) == 64512
        assert str(neighbor["local-address"]) == str(ME)
        assert neighbor["passive"] is False
        if wanted.password_file is None:
            assert neighbor["md5-password"] is None
        else:
            assert base64.b64decode(neighbor["md5-password"]) == password.encode()
