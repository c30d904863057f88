"""Cluster state that is not in the config file: this node's pod CIDR blocks from the
IPAM store and the other nodes, from etcd membership or from the Kubernetes API.

Entry points: `state.ClusterState` (the effective config, followed by the daemon through
the `ClusterFollower` protocol; `state.make_store` opens the IPAM store the config
names), `membership.EtcdMembership`, `kube_source.KubeClusterState` (`cluster.source:
kubernetes`, fed by informers; `kube_effective_config` is its pure part) and
`kube_nodes` (Node objects -> cluster nodes and members, BGPPeer objects -> peers).
"""
