"""The sweep: grid files, config types, the single-trial function, the Ray Tune driver, the CLI.

Only sweep/driver.py imports Ray."""
from results.errors import FrillError


class SweepError(FrillError):
    """A sweep command that cannot run as given (flags, resources, a name holding another grid)."""
