"""Profiles: a slug that resolves to a runtime key, plus how the fake engine behaves."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from persisters.model import FINAL, POST_INFERENCE, POST_TOOLS, PRE_INFERENCE, trim_space
from sim.errors import UnknownProfileError


def _nonneg(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


#: When the engine calls the snapshot hook. ``turnsim``: ``pre_inference`` and
#: ``post_inference`` once, ``post_tools`` per tool round, then ``final``. ``toolloop``:
#: the real tool loop's, ``pre_inference``/``post_inference`` around every model call (one
#: pair per tool round and one for the answer), ``post_tools`` per round, no ``final``.
PHASE_PATTERNS = ("turnsim", "toolloop")


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
    phase_pattern: str = attrs.field(
        default="turnsim", validator=attrs.validators.in_(PHASE_PATTERNS)
    )

    def hook_phases(self) -> list[str]:
        """The phases the engine calls the snapshot hook at, in order, for one completed
        inference under this profile."""
        rounds = self.tool_rounds
        if self.phase_pattern == "toolloop":
            calls = [[PRE_INFERENCE, POST_INFERENCE, POST_TOOLS] for _ in range(rounds)]
            return [p for call in calls for p in call] + [PRE_INFERENCE, POST_INFERENCE]
        return [PRE_INFERENCE, POST_INFERENCE, *([POST_TOOLS] * rounds), FINAL]


def current_profile(at_start: str, current: str) -> str:
    """An inference runs on the conversation's profile as it is when the inference starts."""
    return current


def profile_at_start(at_start: str, current: str) -> str:
    """BUG VARIANT ``profile-resolved-once``: the profile was resolved once, when the chat
    started, so every later switch is ignored by the inferences (gptme #966)."""
    return at_start


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

    def update(self, slug: str, runtime_key: str) -> str:
        """Profile ``slug`` resolves to ``runtime_key`` from now on (a new version of its
        runtime, e.g. ``rebuilder@v1`` -> ``rebuilder@v2``); returns the previous key.

        Only the runtime changes: the engine settings stay. Raises
        :class:`UnknownProfileError` for an unknown slug.
        """
        old = self.get(slug)
        self._profiles[slug] = attrs.evolve(old, runtime_key=trim_space(runtime_key))
        return trim_space(old.runtime_key)

    def resolve(self, slug: str) -> str:
        """The runtime key a profile resolves to (``""`` when it resolves to none)."""
        return trim_space(self.get(slug).runtime_key)


def default_profiles() -> ProfileRegistry:
    """The two profiles of the canonical scenario."""
    return ProfileRegistry([Profile("inventory", "inventory@v1"), Profile("planner", "planner@v1")])
