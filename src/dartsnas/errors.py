"""Errors a user can cause and fix: the CLI prints their message as one line and exits with 2."""


class DartsNASError(Exception):
    """A problem with the user's input (data, config, genotype, op name, checkpoint).

    The message is one line that names the problem and the fix; it is shown without a traceback.
    """


class UnknownNameError(DartsNASError, KeyError):
    """A name that is not in a registry (op, data set, search space)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(DartsNASError, ValueError):
    """A config value that cannot build a run (bad type, out of range, unknown key)."""


class DataError(DartsNASError):
    """Missing or unreadable data."""


class GenotypeError(DartsNASError, ValueError):
    """A malformed genotype file or text."""


class OpError(DartsNASError):
    """A candidate op (a user's, typically) failed to build: the message names it and its module."""


class CheckpointError(DartsNASError):
    """A corrupt, missing or mismatched checkpoint."""


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived; the loop saved a checkpoint at a step boundary and stopped."""

    def __init__(self, signame: str, epoch: int, step: int):
        super().__init__(f"stopped by {signame} in epoch {epoch} after step {step}")
        self.signame, self.epoch, self.step = signame, epoch, step
