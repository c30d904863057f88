"""The Kubernetes API client pieces and the LB-IPAM operator. Imports nothing of the
daemon: the cluster source that feeds the daemon from the API server is
`bgpd.cluster.kube_source`, built on these; `kroute operator` is `bgpd.cli.operator`.

- `api`: the client, resource names, request timeouts.
- `informer.Informer`: list + watch of one resource in a thread that only feeds an
  asyncio queue; resumes from its resourceVersion, relists on 410 Gone, and keeps the
  last state through an API server outage (nothing is withdrawn while it is away).
- `services`: LoadBalancer Services, EndpointSlices and LoadBalancerIPPools -> the
  pool and service documents `lbipam` parses.
- `ipam_store.KubeIpamStore`: cluster-pool blocks in a ConfigMap, compare-and-swap on
  its resourceVersion (`ipam.store: kubernetes`).
- `operator.Operator`: LB-IPAM for the cluster; `lease` is the Lease leader election,
  `assign` the pure allocation and status plan.
"""
