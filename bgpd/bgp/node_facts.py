"""What the daemon derives from its config for import policy and for the speaker."""

from __future__ import annotations

from bgpd.bgp.exabgp_conf import SpeakerSpec
from bgpd.bgp.peers import own_cluster_id, resolve_peers
from bgpd.bgp.policy import LocalFacts
from bgpd.config.model import Config


def local_facts(config: Config) -> LocalFacts:
    """What import policy protects: our prefixes, node addresses, loop markers."""
    assert config.node.ip is not None and config.node.router_id is not None
    me = config.self_node()
    cluster_id = own_cluster_id(config)
    return LocalFacts(
        asn=config.bgp.asn,
        router_id=str(config.node.router_id),
        cluster_id=str(cluster_id) if cluster_id is not None else None,
        own_cidrs=me.pod_cidrs if me else (),
        node_addresses=(config.node.ip, *(n.ip for n in config.cluster.nodes)),
        own_address=config.node.ip,
        pod_cidr_owners=tuple(
            (cidr, n.ip)
            for n in config.cluster.nodes
            if n is not me
            for cidr in n.pod_cidrs
            if cidr.version == n.ip.version
        ),
    )


def speaker_spec(config: Config) -> SpeakerSpec:
    """The speaker's view of the config: this node's side and every resolved peer."""
    assert config.node.ip is not None and config.node.router_id is not None
    return SpeakerSpec(
        router_id=config.node.router_id,
        local_address=config.node.ip,
        asn=config.bgp.asn,
        hold_time=config.bgp.hold_time,
        port=config.bgp.listen_port,
        restart_time=config.bgp.graceful_restart.restart_time,
        neighbors=resolve_peers(config),
    )
