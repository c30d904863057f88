"""The `kubernetes` client's API objects as the tests use them, typed `Any` in this one
place: tests send plain dict bodies, which the client passes on as they are, while its
type stubs ask for V1 models, and they read optional fields the fake server always fills."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client, watch


def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def custom(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)


def discovery(api: client.ApiClient) -> Any:
    return client.DiscoveryV1Api(api)


def coordination(api: client.ApiClient) -> Any:
    return client.CoordinationV1Api(api)


def watch_stream(list_call: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    """`kubernetes.watch.Watch().stream(list_call, **kwargs)` (untyped upstream)."""
    stream: Iterator[Any] = watch.Watch().stream(list_call, **kwargs)  # type: ignore[no-untyped-call]
    return stream
