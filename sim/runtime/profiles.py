"""Profiles: a slug that resolves to a runtime key, plus how the fake engine behaves."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from persisters.model import trim_space
from sim.errors import UnknownProfileError


def _nonneg(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class Profile:
    """A named configuration. ``runtime_key`` may be ``""``: such a profile cannot run."""

    slug: str
    runtime_key: str
    latency_ms: int = attrs.field(default=100, validator=_nonneg)
    jitter_ms: int = attrs.field(default=0, validator=_nonneg)
    tool_rounds: int = attrs.field(default=0, validator=_nonneg)
    tool_latency_ms: int = attrs.field(default=50, validator=_nonneg)
    replies: tuple[str, ...] = ()


class ProfileRegistry:
    """Slug -> :class:`Profile`; unknown slugs raise an error naming the known ones."""

    def __init__(self, profiles: Iterable[Profile]) -> None:
        self._profiles = {p.slug: p for p in profiles}

    def __contains__(self, slug: str) -> bool:
        return slug in self._profiles

    def slugs(self) -> list[str]:
        return sorted(self._profiles)

    def get(self, slug: str) -> Profile:
        try:
            return self._profiles[slug]
        except KeyError:
            known = ", ".join(self.slugs()) or "(none)"
            raise UnknownProfileError(
                f"unknown profile {slug!r}; known profiles: {known}"
            ) from None

    def resolve(self, slug: str) -> str:
        """The runtime key a profile resolves to (``""`` when it resolves to none)."""
        return trim_space(self.get(slug).runtime_key)


def default_profiles() -> ProfileRegistry:
    """The two profiles of the canonical scenario."""
    return ProfileRegistry([Profile("inventory", "inventory@v1"), Profile("planner", "planner@v1")])
