"""The network-namespace test bed behind `kroute lab`: nodes, pods, their configs and daemons.

Entry points: `lab.lab` (`up`, `down`, `restart`, `Lab`, `all_labs`), `lab.nodes`
(`add_node`, `remove_node`), `bgpd.cli.lab.register` for the `kroute lab` subcommands,
`lab.plan.plan_lab` (the pure address plan; pod CIDRs come from the IPAM store through
`lab.build.allocate` and `python -m lab.ipam_tool`), `lab.etcd` (the lab's etcd with
`--store etcd`), `lab.health` (status over a node's unix socket, convergence),
`lab.rows` (what `lab status` shows) and `lab.procs` (recorded processes).
"""
