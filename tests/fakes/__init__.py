"""In-memory twins of the daemon's side effects (kernel routes, loopback, overlay, BPF,
masquerade, membership, LB and IPAM stores), for unit tests only: product code never
imports them and has no silent defaults that stand in for a real component."""
