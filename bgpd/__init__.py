"""kroute's daemon: configuration, BGP control plane through ExaBGP, status and CLI.

Entry points: `bgpd.config.load_config` (typed config), `bgpd.daemon.Daemon` (the
asyncio wiring), `bgpd.cli.main` (the `kroute` command).
"""
