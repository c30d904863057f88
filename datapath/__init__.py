"""kroute's datapath, below the daemon (imports nothing of `bgpd`): the kernel routes it
owns, the eBPF tc programs and their maps, the VXLAN overlay, the masquerade, and the
kernel side of the CNI plugin.

Entry points: `routes` (KernelRoute values, the pure diff, the reconciler and the
`KernelRoutes` protocol) with `netlink` (the bulk rtnetlink implementation) and
`host_routes` (one raw dump of the routes of others); `loader.BpfDatapath` (compile,
load, pin and attach; `bpf_maps`, `bpf_pins`, `tc_hooks`); `overlay.VxlanOverlay` with
its pure plan (`overlay_plan`, `overlay_state`); `masq` (the masquerade interface) with
`masq_bpf` and `nft_masq`; `loopback` (LB IPs on the node); `cni_net` and `cni_spec`
(veth wiring and the CNI protocol for `bgpd.cni`).
"""
