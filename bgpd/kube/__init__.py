"""Kubernetes as kroute's cluster source (`cluster.source: kubernetes`) and the LB-IPAM
operator. Only `bgpd.runner`, `bgpd.cluster.state` (the IPAM store), `bgpd.cli.main` (the operator
command, status lines) and the tests import from here.

- `informer.Informer`: list + watch of one resource in a thread that only feeds an
  asyncio queue; resumes from its resourceVersion, relists on 410 Gone, and keeps the
  last state through an API server outage (nothing is withdrawn while it is away).
- `nodes`: Node objects -> cluster nodes and members (InternalIP, `spec.podCIDRs`,
  `kroute.io/` annotations), BGPPeer objects -> peers.
- `services`: LoadBalancer Services, EndpointSlices and LoadBalancerIPPools -> the
  pool and service documents `lbipam` parses.
- `cluster.KubeClusterState`: the daemon's cluster state fed by informers
  (`kube_effective_config` is the pure part).
- `ipam_store.KubeIpamStore`: cluster-pool blocks in a ConfigMap, compare-and-swap on
  its resourceVersion (`ipam.store: kubernetes`).
- `operator`, `operator_cli`: `kroute operator`; `lease` is the Lease leader election,
  `assign` the pure allocation and status plan.
- `status_lines`: the `kroute status` line (imports nothing from the client).
"""
