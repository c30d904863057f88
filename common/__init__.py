"""The lowest layer, shared by every package: kroute's exceptions and the versioned JSON
state documents. Imports nothing else of kroute.

Entry points: `common.errors` (`KrouteError` and one subclass per kind: `ConfigError`,
`PeerError`, `DatapathError`, `AllocationError`), `common.documents.load_versioned`.
"""
