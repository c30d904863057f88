"""The reconcilers that drive `datapath/`: desired kernel routes, the routing mode
(native or over the VXLAN overlay), the BPF maps and programs, the masquerade.

Entry points: `desired.desired_kernel_routes` (pure), `overlay.OverlayRouting`,
`datapath.DatapathSync`, `host.NetlinkHost` (the host facts they read).
"""
