"""The daemon's HTTP surface, both sides: the status server (status, health, metrics,
route, LB, cluster and datapath views; control endpoints on the unix socket only), the
client that the CLI, the lab and the CNI plugin use, and the systemd notify protocol.

Entry points: `status.StatusServer`, `metrics.add_collector`, `client.call` /
`client.fetch_status`, `sdnotify.notifier_for`.
"""
