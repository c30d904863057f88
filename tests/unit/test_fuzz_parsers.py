"""Property-based fuzzing of the parsers kroute owns: config files, CNI input, pool and
service documents, HTTP requests. (Exabgp event lines and raw UPDATEs are fuzzed in
test_events.py and test_update_check.py.) Each must answer anything with a value or
its own error type, never another exception, never a 5xx."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpd.api.status import build_app
from bgpd.config.model import Config, load_config, parse_config
from bgpd.daemon import Daemon
from common.errors import ConfigError
from datapath.cni_spec import CniError, parse_netconf, parse_request
from lbipam.documents import DocumentError, parse_pools, parse_services
from tests.fakes.kernel_routes import FakeKernelRoutes
from tests.fakes.lb_store import MemoryLbStore
from tests.fakes.loopback import FakeLoopback
from tests.unit.conftest import FakeSpeaker, cluster_data

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["10.0.0.1", "10.244.0.0/16", "fd00::/64", "full", "none", "64512", "1-2"])
)
keys = st.text(max_size=10) | st.sampled_from(
    ["bgp", "asn", "peers", "address", "cluster", "nodes", "podCIDRs", "name", "blocks", "cidr"]
)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)
SETTINGS = settings(max_examples=150, deadline=None)


# -- config ------------------------------------------------------------------------------


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


VALID = cluster_data()
VALID["bgp"]["peers"] = [{"address": "192.0.2.1", "asn": 65000, "import": {"allow": ["0/0"]}}]
VALID_PATHS = [p for p in _paths(VALID) if p]


def _parses_or_refuses(data: Any) -> None:
    try:
        assert isinstance(parse_config(data, host_defaults=False), Config)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(line, str) and line for line in exc.errors)


@SETTINGS
@given(documents)
def test_config_documents(data: Any) -> None:
    _parses_or_refuses(data)


@SETTINGS
@given(st.sampled_from(VALID_PATHS), documents)
def test_config_with_one_field_replaced(path: tuple[Any, ...], value: Any) -> None:
    """A valid config with one field anywhere set to anything: refused with a message
    or accepted, never a crash (this reaches every validator, unlike random documents)."""
    data = copy.deepcopy(VALID)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _parses_or_refuses(data)


@SETTINGS
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_config_files(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "kroute.yaml"
    path.write_text(text, errors="surrogateescape")
    with contextlib.suppress(ConfigError):
        load_config(path)


# -- CNI ---------------------------------------------------------------------------------

cni_env = st.fixed_dictionaries(
    {"CNI_COMMAND": st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "", "add", "X"])},
    optional={
        "CNI_CONTAINERID": st.text(max_size=80),
        "CNI_IFNAME": st.text(max_size=20),
        "CNI_NETNS": st.text(max_size=30),
        "CNI_ARGS": st.text(max_size=30),
    },
)
netconf_text = st.text(max_size=200) | documents.map(
    lambda d: json.dumps({"cniVersion": "1.0.0", "name": "k", "kroute": d, "mtu": d})
)


@SETTINGS
@given(cni_env, netconf_text)
def test_cni_requests(env: dict[str, str], stdin: str) -> None:
    try:
        parse_request(env, stdin)
    except CniError as exc:
        assert exc.code > 0 and exc.to_json("1.0.0")["msg"]


@SETTINGS
@given(netconf_text)
def test_cni_network_configs(stdin: str) -> None:
    try:
        parse_netconf(stdin)
    except CniError as exc:
        assert exc.to_json("1.0.0")["code"] == exc.code


ESCAPES = ["../x", "a/b", "/abs", "..", ".", "a\0b", "x" * 300, "a\nb"]


@pytest.mark.parametrize("bad", ESCAPES)
@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_IFNAME"])
def test_cni_refuses_names_that_would_leave_its_state_directory(var: str, bad: str) -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/n"}
    env[var] = bad
    with pytest.raises(CniError) as caught:
        parse_request(env, '{"cniVersion": "1.0.0", "name": "k"}')
    assert var in caught.value.msg


# -- pool and service documents -----------------------------------------------------------


@SETTINGS
@given(documents)
def test_pool_and_service_documents(docs: Any) -> None:
    for parse in (parse_pools, parse_services):
        try:
            parse(docs)
        except DocumentError as exc:
            assert str(exc)


# -- HTTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def status_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The read-only status app (as on the TCP listener) serving in a thread."""
    run_dir = tmp_path_factory.mktemp("status")
    config = parse_config(cluster_data(run_dir), host_defaults=True)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    async def serve() -> web.AppRunner:
        daemon = Daemon(
            config,
            FakeKernelRoutes(),
            speaker_factory=FakeSpeaker,
            loopback=FakeLoopback(),
            lb_store=MemoryLbStore(),
        )
        runner = web.AppRunner(build_app(daemon, control=False))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield port[0]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _exchange(port: int, request: bytes, *, half_close: bool = False) -> bytes:
    """Send `request`, read until the server closes. `half_close` ends our side first
    (for garbage that is not a complete request; aiohttp may then close silently)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status_code(response: bytes) -> int | None:
    if not response:
        return None  # the server may close on garbage it cannot even answer
    first = response.split(b"\r\n", 1)[0].split()
    assert first[0].startswith(b"HTTP/1."), response[:100]
    return int(first[1])


methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "G\0T"])
ENDPOINTS = ["/status", "/routes", "/healthz", "/livez", "/readyz", "/metrics", "/datapath"]
CONTROL = ["/drain", "/undrain", "/reload", "/datapath/pods", "/nodes/remove", "/ipam", "/pools"]
paths = st.sampled_from([*ENDPOINTS, *CONTROL, "/", "/../etc", "/status/", "//status"]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40
).map(lambda t: "/" + t)
queries = st.sampled_from(["", "?verbose", "?verbose=1", "?x=%ff", "?" + "a=b&" * 50])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(methods, paths, queries, st.binary(max_size=64))
def test_http_requests_never_fail_the_server_and_only_get_reads(
    status_port: int, method: str, path: str, query: str, body: bytes
) -> None:
    head = (
        f"{method} {path}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    code = _status_code(_exchange(status_port, head.encode("latin-1") + body))
    unready = code == 503 and path in ("/readyz", "/livez", "/healthz")  # never started
    assert code is not None and (code < 500 or unready), code
    if method not in ("GET", "HEAD"):
        assert code != 200, f"{method} {path} was served on the read-only listener"


@SETTINGS
@given(st.binary(max_size=300))
def test_raw_garbage_on_the_http_port(status_port: int, data: bytes) -> None:
    code = _status_code(_exchange(status_port, data, half_close=True))
    assert code is None or code < 500


def test_status_still_answers_after_the_fuzzing(status_port: int) -> None:
    response = _exchange(
        status_port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert _status_code(response) == 200
