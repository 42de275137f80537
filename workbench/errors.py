"""The workbench's own errors share one base class, so callers (the command line above all) can tell a problem
with the user's input or files -- reported as one clear line -- from a bug, which keeps its traceback.

Every concrete error also keeps the builtin base it always had (``ParamsError`` is still a ``ValueError``,
``NotebookFailed`` a ``RuntimeError``), so existing ``except ValueError`` code keeps working.
"""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose: a bad params file, a corrupt zoo, a foreign
    checkpoint, a busy run folder... The message says what was wrong, where, and what to do."""


class ConfigError(WorkbenchError, ValueError):
    """A setting (a :class:`~workbench.training.train_config.TrainConfig` field or a params-file value) is out of its
    range."""


class ParamsError(WorkbenchError, ValueError):
    """A params file is missing, malformed or does not fit the notebooks (:mod:`workbench.run.params`)."""


class UsageError(WorkbenchError, ValueError):
    """A command-line flag or a ``WORKBENCH_*`` environment variable holds a value the workbench cannot use; the
    command line exits with code 2, as for a bad params file."""


__all__ = ["WorkbenchError", "ConfigError", "ParamsError", "UsageError"]
