"""The `kroute` command: subcommands, the tables they print, and the client of the
daemon's unix socket and HTTP port.

Entry points: `main.main` (also `python -m bgpd.cli`), `client.call` / `client.fetch_status`,
`output` (the `-o table|json|yaml` conventions).
"""
