"""Exceptions for expected failures: the CLI prints them as one line and exits with 2."""

from __future__ import annotations


class MmaifError(Exception):
    """An expected error caused by the user's input (files, sizes, flags, configs).

    The message is one line saying what is wrong and what to do about it.
    """

    exit_code = 2


class InputError(MmaifError):
    """A missing, unreadable, malformed or incompatible input file."""


class UsageError(MmaifError):
    """Wrong flags or combinations of flags."""
