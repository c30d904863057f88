"""The BGP control plane through ExaBGP: everything between the wire and the daemon.

Entry points: `speaker.ExaBGPSpeaker` (the exabgp child and its bridge, behind the
`Speaker` protocol), `events` (parsed exabgp output, with `update_check` for RFC 7606),
`rib.Rib` and `rib.best_next_hops`, `sessions.Sessions` (peer states, graceful restart,
max-prefix), `policy` (import), `advertise.desired_advertisements` (export, reflection),
`peers.resolve_peers`, `drain.Drain`, `node_facts` (what this node tells the speaker).
"""
