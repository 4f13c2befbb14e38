"""The scenario model: a validated scenario file as frozen values, and the step kinds it
may hold.

:mod:`sim.scenario.parse` builds these from YAML, :mod:`sim.scenario.render` writes them
back, the director plays them and the shrinker derives smaller ones.
"""

from __future__ import annotations

import attrs

from sim.runtime.conversation import DURABILITIES, SESSION_SOURCES
from sim.runtime.profiles import PHASE_PATTERNS, Profile, ProfileRegistry
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
from sim.scenario.lifecycle_actions import RestartServer, Schedule
from sim.scenario.races import ExpectRace
from sim.scenario.steps import DAY_MS, Field, Step
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
        RestartServer,
        Schedule,
        Resave,
        CliSave,
        ExpectTurn,
        ExpectTurnCount,
        ExpectConversation,
        ExpectFailure,
        ExpectRace,
    )
}


#: The scenario's own scalar fields (``profiles``, ``conversations``, ``steps`` and
#: ``retry`` are mappings and lists, described below).
SCENARIO_FIELDS = (
    Field(
        "name",
        "string",
        "the scenario's name; prefix of its stored conversation ids",
        required=True,
    ),
    Field("description", "text", "what the scenario shows; printed in docs and reports"),
    Field("seed", "integer", "the default seed; `--seed` overrides it", default=0),
    Field(
        "store_latency_ms",
        "integer",
        "virtual time every save takes (a slow store)",
        high=3_600_000,
        default=0,
    ),
    Field(
        "markers",
        "strings",
        "pytest markers given to this file's test items (e.g. slow); the runner ignores them",
        pattern=("[A-Za-z_][A-Za-z0-9_]*", "a pytest marker name (letters, digits, _)"),
    ),
    Field(
        "xfail",
        "reason",
        "pytest expects this file's items to fail (true, or the reason); the runner ignores it",
    ),
)
RETRY_FIELDS = (
    Field("attempts", "integer", "tries of a transient save failure", low=1, high=100, default=3),
    Field(
        "backoff_ms",
        "integer",
        "virtual ms before the first retry, doubled per attempt",
        high=60_000,
        default=10,
    ),
)
PROFILE_FIELDS = (
    Field(
        "runtime_key",
        "text",
        "the runtime the profile resolves to, e.g. planner@v1; '' means no runtime (an "
        "inference under it is refused)",
        required=True,
    ),
    Field("latency_ms", "integer", "virtual duration of one model call", high=DAY_MS, default=100),
    Field(
        "jitter_ms",
        "integer",
        "each latency varies by up to ± this (seeded)",
        high=DAY_MS,
        default=0,
    ),
    Field(
        "tool_rounds",
        "integer",
        "tool rounds per inference (one post_tools snapshot each)",
        high=100,
        default=0,
    ),
    Field(
        "tool_latency_ms", "integer", "virtual duration of one tool call", high=DAY_MS, default=50
    ),
    Field("replies", "strings", "scripted replies, used in turn order (default: generated)"),
    Field(
        "phase_pattern",
        "choice",
        "turnsim: a hook call per phase, final included; toolloop: the real tool loop's, a "
        "pre/post pair around every model call and no hook at final",
        choices=PHASE_PATTERNS,
        default="turnsim",
    ),
)
#: The key of a repeat block in a list of steps.
REPEAT = "repeat"
#: Most conversations one template may make, and steps a file may expand to.
MAX_TEMPLATE_COUNT = 100_000
MAX_STEPS = 1_000_000
CONVERSATION_FIELDS = (
    Field("profile", "profile", "the initial profile", required=True),
    Field(
        "session",
        "string",
        "the session id (default: generated from the seed); in a template, {i} is the "
        "conversation's number",
    ),
    Field(
        "count",
        "integer",
        "a template: this many conversations, named <name>1 .. <name>N; a step naming the "
        "template runs once for each, in order",
        low=1,
        high=MAX_TEMPLATE_COUNT,
    ),
    Field(
        "session_from",
        "choice",
        "where the pipelines take each save's session: conversation, or metadata (they are "
        "handed none and read the turn's geppetto.session_id@v1, as the real hook did)",
        choices=SESSION_SOURCES,
        default="conversation",
    ),
    Field(
        "history",
        "boolean",
        "feed the conversation's history (the blocks of its latest stored final snapshot) "
        "into every inference; a history that cannot be loaded refuses the inference",
        default=False,
    ),
    Field(
        "durability",
        "choice",
        "sync: the engine waits for each phase snapshot; async: phase snapshots are written "
        "in the background while the inference goes on (the final save waits for them)",
        choices=DURABILITIES,
        default="sync",
    ),
)
REPEAT_FIELDS = (
    Field(
        "times",
        "integer",
        "how many times the steps run, in order",
        required=True,
        low=1,
        high=MAX_STEPS,
    ),
)


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
    history: bool = False  # every inference is fed the conversation's history
    durability: str = "sync"  # or "async": phase snapshots written in the background


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
    markers: tuple[str, ...] = ()  # pytest markers of the file's items
    xfail: str | None = None  # pytest expects the items to fail, for this reason

    def registry(self) -> ProfileRegistry:
        return ProfileRegistry(self.profiles)

    def with_steps(self, steps: tuple[Located, ...]) -> Scenario:
        return attrs.evolve(self, steps=steps)
