"""The `kroute` command: subcommands and the tables they print, from what the daemon
serves over its unix socket or HTTP port (`bgpd.api.client`).

Entry points: `main.main` (also `python -m bgpd.cli`); the command groups `lb` (pools
and services), `datapath`, `lab` (`kroute lab ...`, driving `lab/`), `operator`
(`kroute operator`); `tables` and `kube_status` for `-o table`; `output` for the
`-o table|json|yaml` conventions every command shares.
"""
