"""The small exception hierarchy of footprints.

Every error a user can cause derives from :class:`FootprintsError`. The CLI
catches that base class and prints its message as a one-line reason with a
non-zero exit code, so messages must say what was wrong (showing the offending
value with ``!r``) and how to fix it.
"""


class FootprintsError(Exception):
    """Base class for errors a user can cause and fix."""


class ConfigError(FootprintsError, ValueError):
    """A flag or option is invalid; raised before any pipeline is built."""


class ContractError(FootprintsError, ValueError):
    """A record, model or file does not meet a contract in ``footprints.contracts``."""


class InputError(FootprintsError, ValueError):
    """An input file cannot be used (unreadable, no CRS, wrong bands, ...)."""


# Exit codes of the ``footprints`` command; each means one thing.
EXIT_OK = 0  # done: outputs written, counts reconcile, quality gates passed
EXIT_FAILED = 1  # the run failed part-way (an error during the pipeline or training)
EXIT_USAGE = 2  # nothing ran: invalid flags or inputs
EXIT_CHECK = 3  # done, but counts do not reconcile or a quality gate tripped
