"""Exceptions for user-facing errors.

Every error a user can cause (bad config, bad file, missing weights) derives from `FpbenchError`.
The CLI prints such errors as one line and exits nonzero; anything else is a bug and keeps its
traceback.
"""


class FpbenchError(Exception):
    """A user-correctable problem. `str(err)` is one line: what was wrong and what to do."""


class ConfigError(FpbenchError, ValueError):
    """A configuration value is invalid."""


class CheckpointError(FpbenchError):
    """A checkpoint file is missing, truncated, corrupt or of an unknown format."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint references a global that a generator checkpoint never needs."""


class MissingFileError(FpbenchError, FileNotFoundError):
    """A required file (weights, dataset) is not on disk and cannot be downloaded."""


class StatsMismatchError(FpbenchError, ValueError):
    """Feature statistics do not belong to the generator (or lack a requested layer)."""
