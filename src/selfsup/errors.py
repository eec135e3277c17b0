"""Errors a user can act on.

`SelfsupError` carries a one-line cause; the CLI prints it without a traceback (unless `--debug`).
`UsageError` and `ConfigError` are the user's to fix (exit code 2); `StageFailure` means the
stage could not finish (exit code 1).
"""

from __future__ import annotations


class SelfsupError(Exception):
    """A failure with a one-line, actionable message."""

    exit_code = 1


class UsageError(SelfsupError):
    """Bad command-line usage or bad input paths: the user's to fix (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """The recipe is invalid: the message names the section, the key and the fix."""


class StageFailure(SelfsupError):
    """A stage could not produce its output (exit code 1)."""
