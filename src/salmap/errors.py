"""Errors that salmap reports to people.

Each error carries the exit code the command line uses for it, and its message is one
line that says what is wrong and how to fix it.
"""

from __future__ import annotations

__all__ = ["SalmapError", "UsageError", "InputError", "ModelError"]


class SalmapError(Exception):
    """Base class of every error salmap reports; ``exit_code`` is the CLI's status."""

    exit_code = 1


class UsageError(SalmapError, ValueError):
    """An argument or option is wrong (exit code 2)."""

    exit_code = 2


class InputError(SalmapError, ValueError):
    """An input file (image, video, fixations) cannot be used (exit code 3)."""

    exit_code = 3


class ModelError(SalmapError):
    """A model cannot be loaded or lacks what a method needs (exit code 4)."""

    exit_code = 4
