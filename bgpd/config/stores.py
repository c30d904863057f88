"""Config models of where allocations and membership live: IPAM mode and stores, etcd."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bgpd.config.types import CIDR, Model
from lbipam import DocumentError, Pool, Service, parse_pools
from lbipam import parse_services as parse_service_docs

DEFAULT_IPAM_FILE = "/var/lib/kroute/ipam.json"


def _readable(value: str | None) -> str | None:
    """A file named in the config must be readable at load (message names the file)."""
    if value is not None:
        try:
            Path(value).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
    return value


class EtcdConfig(Model):
    """How to reach etcd (bare-metal clusters): IPAM store and membership share it."""

    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None

    @field_validator("ca_file", "cert_file", "key_file", "password_file")
    @classmethod
    def _files(cls, value: str | None) -> str | None:
        return _readable(value)

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            if not endpoint.startswith(("http://", "https://")) or ":" not in endpoint[8:]:
                raise ValueError(
                    f"{endpoint!r} must be http(s)://HOST:PORT, for example http://10.0.0.5:2379"
                )
        if not value:
            raise ValueError("list at least one endpoint")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> EtcdConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("etcd.certFile and etcd.keyFile go together; set both or neither")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("etcd.username and etcd.passwordFile go together; set both")
        return self


class ClusterPoolConfig(Model):
    """Like Cilium's clusterPoolIPv4PodCIDRList/MaskSize and Calico's blockSize."""

    cidrs: tuple[CIDR, ...] = Field(min_length=1)
    mask_size_v4: int = Field(default=24, ge=1, le=32, strict=True, alias="maskSizeV4")
    mask_size_v6: int = Field(default=112, ge=1, le=128, strict=True, alias="maskSizeV6")


class IpamConfig(Model):
    """Where pod CIDRs come from: the static node list, a cluster pool, or Kubernetes."""

    mode: Literal["static", "cluster-pool", "kubernetes"] = "static"
    cluster_pool: ClusterPoolConfig | None = None
    store: Literal["file", "etcd", "kubernetes"] = "file"
    file: str = DEFAULT_IPAM_FILE

    @model_validator(mode="after")
    def _mode(self) -> IpamConfig:
        if self.mode == "cluster-pool" and self.cluster_pool is None:
            raise ValueError(
                "ipam.clusterPool: required with ipam.mode cluster-pool; "
                "set clusterPool.cidrs (and maskSizeV4/maskSizeV6)"
            )
        if self.store == "kubernetes" and self.mode != "cluster-pool":
            raise ValueError(
                "ipam.store: kubernetes holds cluster-pool blocks; set ipam.mode: cluster-pool"
            )
        return self


class KubernetesConfig(Model):
    """How to reach the API server (`cluster.source: kubernetes`)."""

    kubeconfig: str | None = None  # None: the pod's service account (in-cluster)
    default_load_balancer_class: bool = Field(default=True, alias="defaultLoadBalancerClass")
    sync_timeout: int = Field(default=60, ge=1, le=3600, strict=True, alias="syncTimeout")

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig(cls, value: str | None) -> str | None:
        return _readable(value)


class LoadBalancerConfig(Model):
    """LoadBalancer pools and services on bare metal (documents as in `lbipam`)."""

    pools: tuple[Any, ...] = ()
    services: tuple[Any, ...] = ()

    @model_validator(mode="after")
    def _documents(self) -> LoadBalancerConfig:
        errors: list[str] = []
        for parse, docs in ((parse_lb_pools, self.pools), (parse_lb_services, self.services)):
            try:
                parse(list(docs))
            except DocumentError as exc:
                errors.extend(exc.errors)
        if errors:
            raise ValueError("\n".join(errors))
        return self


def parse_lb_pools(docs: Any) -> tuple[Pool, ...]:
    """Pools from `loadBalancer.pools`; their creation time comes from the store."""
    return parse_pools(docs, "loadBalancer.pools")


def parse_lb_services(docs: Any) -> tuple[Service, ...]:
    return parse_service_docs(docs, "loadBalancer.services")
