"""LoadBalancer IPs on this node: allocation rounds over `lbipam`, the cluster-wide
document they are written to, and which addresses this node serves.

Entry points: `allocation.LoadBalancers`, `sync.LbSync` (rounds against the store),
`store.LbStore` (file and memory stores; `etcd_store.EtcdLbStore`),
`configured_store.make_lb_store`.
"""
