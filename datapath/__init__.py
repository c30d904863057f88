"""kroute's datapath: the kernel routes it owns (and, later, overlay and eBPF programs).

Entry points: `datapath.routes` (KernelRoute values, the pure diff, the reconciler and
the `KernelRoutes` protocol with an in-memory fake) and `datapath.netlink` (the real,
bulk rtnetlink implementation).
"""
