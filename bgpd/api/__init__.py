"""What the daemon shows outside: the HTTP status server (status, health, metrics, route,
LB, cluster and datapath views, control endpoints on the unix socket) and the systemd
notify protocol.

Entry points: `status.StatusServer`, `metrics.add_collector`, `sdnotify.notifier_for`.
"""
