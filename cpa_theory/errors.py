"""Typed errors. Every message says what was wrong *and* how to fix it.

All bad-input errors derive from :class:`CPAInputError` (a ``ValueError``), so
the CLI can map them to exit code 2 and callers can catch one class.
"""

from __future__ import annotations


class CPAInputError(ValueError):
    """Bad input from the user: the message names the fix."""


class NonFiniteError(CPAInputError):
    """A parameter, point or radius contains NaN or inf."""


class ShapeError(CPAInputError):
    """Array shapes or dimensions do not fit together."""


class BatchError(CPAInputError):
    """Train-mode BN needs a batch of at least two points."""


class ActivationError(CPAInputError):
    """An activation is unknown or not a continuous piecewise-affine function."""


class BatchNormError(CPAInputError):
    """BN parameters are invalid (unknown mode, missing running statistics, eps < 0, ...)."""


class WindowError(CPAInputError):
    """A window is invalid (radius <= 0, NaN centre, unsupported norm)."""


class NetworkFormatError(CPAInputError):
    """A network file is missing, corrupt or not in the ``cpa-network/1`` format."""


class DegenerateBatchNormError(CPAInputError):
    """BN is undefined: zero batch variance with eps = 0 (s = 0)."""


class OutputError(CPAInputError):
    """An output path cannot be written safely (not a regular file, a directory the toolkit does not own,
    a run directory locked by another run, ...)."""


class CPAInternalError(RuntimeError):
    """A computation produced something it must never produce (NaN/inf inside a computation, an
    inconsistent certificate): a bug to report, never bad input. The CLI exits 3."""


class InputFileError(CPAInputError):
    """A user file cannot be read safely: missing, a directory, a pipe or device, too large, not UTF-8, not
    valid or not sensible JSON (too deep, huge integers, NaN literals)."""


class ConfigError(CPAInputError):
    """A sweep configuration or a command-line option has a wrong type or value."""


class ArgumentTypeError(CPAInputError, TypeError):
    """An argument of the Python API has the wrong type (None or a string where a Network, a Layer tuple or a
    number belongs). Also a ``TypeError``, so code that caught the raw error keeps working."""


class RegionLimitError(CPAInputError, RuntimeError):
    """A count would exceed the caller's ``max_regions``: raise the limit or shrink the window."""


class ImportCheckError(CPAInputError):
    """An imported network differs from the framework's own forward pass (:mod:`cpa_theory.import_check`):
    the model was not read as it computes. The message says where and what to check."""
