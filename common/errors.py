"""One exception base for kroute, with a subclass per kind of failure.

Every message names the object or field at fault and says what to do about it.
"""


class KrouteError(Exception):
    """Base of every error kroute raises on purpose."""


class ConfigError(KrouteError):
    """The configuration is invalid; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class PeerError(KrouteError):
    """A BGP peer or the speaker process misbehaved."""


class DatapathError(KrouteError):
    """The kernel refused or failed a datapath change (routes, devices, programs)."""


class AllocationError(KrouteError):
    """An address or prefix could not be allocated."""
