"""Domain errors. Each message names the problem and the fix; the CLI prints it as one line."""

from __future__ import annotations


class MpsearchError(Exception):
    """Base of every error a user can act on. The CLI turns it into one line and exit code 1."""

    exit_code = 1


class UsageError(MpsearchError):
    """A flag or argument is missing or malformed."""

    exit_code = 2


class ModelLoadError(MpsearchError):
    """The model file is missing, corrupt, or needs an explicit opt-in to load."""


class DataError(MpsearchError):
    """Calibration data is missing, corrupt, or does not fit the model."""


class FormatError(MpsearchError):
    """An unknown or malformed number-format name."""


class BudgetError(MpsearchError):
    """A budget string cannot be parsed or names an unknown metric."""


class InfeasibleBudget(MpsearchError):
    """No assignment of formats meets the budget."""


class NoQuantizableSites(MpsearchError):
    """The model has no Linear / Conv / Embedding weight to quantize."""


class ModelMismatch(MpsearchError):
    """A plan was made for a different model."""


class PlanError(MpsearchError):
    """A plan file is missing, corrupt, or of an unsupported schema version."""


class StudyError(MpsearchError):
    """A study file is invalid, or its stored trials do not match it."""


class ExportError(MpsearchError):
    """A plan cannot be written in a runtime's format (a format it cannot express, a missing package)."""
