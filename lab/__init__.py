"""The network-namespace test bed behind `kroute lab`: nodes, pods, their configs and daemons.

Entry points: `lab.lab` (`up`, `down`, `restart`, `Lab`, `all_labs`), `lab.cli.register` for
the `kroute lab` subcommands, `lab.plan.plan_lab` (the pure address plan), `lab.health`
(status over a node's unix socket, convergence) and `lab.procs` (recorded processes).
"""
