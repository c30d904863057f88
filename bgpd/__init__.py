"""kroute's daemon, grouped by responsibility; the layers, lowest first:

- `bgpd.config`: the typed configuration (`model.load_config`), its validation and the
  generated reference; `bgpd.files` and `bgpd.health` (heartbeats) beside it.
- `bgpd.bgp`: the BGP control plane through ExaBGP (speaker, events, RIB, sessions,
  policy, advertisements, drain); `bgpd.cluster` (IPAM wiring, membership),
  `bgpd.kube` (the Kubernetes source and operator), `bgpd.lb` (LoadBalancer IP rounds
  and their store), `bgpd.reconcile` (what drives `datapath/`).
- `bgpd.daemon.Daemon`: the wiring (sources -> desired state -> reconcilers), with
  `bgpd.reload`.
- On top: `bgpd.api` (HTTP status, health, metrics, systemd notify), `bgpd.runner` (the
  process), `bgpd.cli` (the `kroute` command), `bgpd.cni` (the `kroute-cni` plugin).

Imports only point down; `make lint` checks it (scripts/check_layers.py).
"""
