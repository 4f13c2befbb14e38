"""Errors of the simulator itself (store errors live in :mod:`persisters.errors`)."""

from __future__ import annotations

from persisters.errors import TurnsimError


class UnknownProfileError(TurnsimError):
    """A profile slug that the registry does not know."""


class NoRuntimeError(TurnsimError):
    """A conversation's profile resolves to no runtime, so no inference may start."""
