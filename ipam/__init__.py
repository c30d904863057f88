"""Per-node pod CIDRs and per-pod IPs. Not built yet: the static node list in the
config file is the only source of pod CIDRs today (see the README)."""
