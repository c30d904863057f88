"""Kubernetes as kroute's cluster source (`cluster.source: kubernetes`) and the LB-IPAM
operator.

- `informer.Informer`: list + watch of one resource in a thread that only feeds an
  asyncio queue; resumes from its resourceVersion, relists on 410 Gone, and keeps the
  last state through an API server outage (nothing is withdrawn while it is away).
- `nodes`: Node objects -> cluster nodes and members (InternalIP, `spec.podCIDRs`,
  `kroute.io/` annotations), BGPPeer objects -> peers; `nodes.kube_effective_config`.
- `services`: LoadBalancer Services, EndpointSlices and LoadBalancerIPPools -> the
  pool and service documents `lbipam` parses.
- `cluster.KubeClusterState`: the daemon's cluster state fed by informers.
- `operator`: `kroute operator`, Lease leader election (`lease`) and LB IP assignment
  written to `status.loadBalancer.ingress` and pool status.
"""
