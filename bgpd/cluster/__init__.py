"""Cluster state that is not in the config file: this node's pod CIDR blocks from the
IPAM store and the other nodes from the membership (etcd).

Entry points: `state.ClusterState` (the effective config, followed by the daemon through
the `ClusterFollower` protocol), `state.make_store`, `membership.EtcdMembership`.
"""
