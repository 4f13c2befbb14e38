"""The scenario model: a validated scenario file as frozen values, and the step kinds it
may hold.

:mod:`sim.scenario.parse` builds these from YAML, :mod:`sim.scenario.render` writes them
back, the director plays them and the shrinker derives smaller ones.
"""

from __future__ import annotations

import attrs

from sim.runtime.profiles import Profile, ProfileRegistry
from sim.scenario.actions import (
    Cancel,
    Crash,
    InjectFault,
    MakeReadOnly,
    Resave,
    Send,
    Sleep,
    SwitchProfile,
    UpdateProfile,
    WaitIdle,
)
from sim.scenario.expectations import (
    ExpectConversation,
    ExpectFailure,
    ExpectTurn,
    ExpectTurnCount,
)
from sim.scenario.steps import Step
from sim.scenario.writers import CliSave

#: step key -> its class, in the order docs and messages list them.
STEP_KINDS: dict[str, type[Step]] = {
    cls.key: cls
    for cls in (
        Send,
        SwitchProfile,
        UpdateProfile,
        WaitIdle,
        Sleep,
        Cancel,
        Crash,
        MakeReadOnly,
        InjectFault,
        Resave,
        CliSave,
        ExpectTurn,
        ExpectTurnCount,
        ExpectConversation,
        ExpectFailure,
    )
}


@attrs.frozen
class Where:
    """Where a step came from, for messages and the replay line."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@attrs.frozen
class Located:
    """A step with its position in the file."""

    index: int  # 1-based, in file order
    step: Step
    where: Where

    @property
    def kind(self) -> str:
        """The step's key in the file (``send``, ``switch_profile``, ...)."""
        return self.step.key


@attrs.frozen
class ConversationSpec:
    name: str
    profile: str
    session: str | None = None
    session_from: str = "conversation"  # or "metadata": the pipelines get no session


@attrs.frozen
class Scenario:
    name: str
    path: str
    seed: int
    profiles: tuple[Profile, ...]
    conversations: tuple[ConversationSpec, ...]
    steps: tuple[Located, ...]
    description: str = ""
    store_latency_ms: int = 0
    retry_attempts: int = 3
    retry_backoff_ms: int = 10

    def registry(self) -> ProfileRegistry:
        return ProfileRegistry(self.profiles)

    def with_steps(self, steps: tuple[Located, ...]) -> Scenario:
        return attrs.evolve(self, steps=steps)
