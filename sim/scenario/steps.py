"""What a scenario step is: the contract every step kind keeps.

A step kind is one frozen attrs class (a :class:`Step`), which says in one place how it
is read from YAML (``required``/``optional``/``shorthand`` and :meth:`Step.from_yaml`),
how it is played (:meth:`Step.run`) and how it is written back (:meth:`Step.to_yaml`).
The kinds are in :mod:`sim.scenario.actions` (steps that drive the world) and
:mod:`sim.scenario.expectations` (``expect_*`` steps that check it);
:data:`sim.scenario.model.STEP_KINDS` lists them by the key a scenario file uses. YAML
itself stays in :mod:`sim.scenario.parse` and :mod:`sim.scenario.render`: a step reads its
fields through :class:`StepFields` and plays against :class:`StepEnv` (what the director
lends it). ``docs/scenarios.md`` documents every step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

if TYPE_CHECKING:
    from sim.runtime.conversation import Conversation, Prompt
    from sim.runtime.kernel import SimTask
    from sim.runtime.world import World

#: The pipelines a save goes through: the snapshot hook's and the final persister's.
PIPELINES = ("snapshot", "final")
#: The largest integer a scenario may hold (JSON numbers stay exact below it).
MAX_INT = 2**53
DAY_MS = 86_400_000

#: What a field may hold, as :meth:`StepFields.read` checks it and the JSON Schema says it.
FIELD_KINDS = (
    "string",  # a non-empty string
    "text",  # a string, empty allowed
    "integer",  # between low and high
    "boolean",
    "choice",  # one of choices
    "conv",  # a defined conversation (or template)
    "conv_or_all",  # the same, or `all`
    "profile",  # a defined profile
    "phase",
    "phases",  # a list of phases
    "turn",  # a turn label (new for a send, known for the others)
    "delay",  # `random` or a delay in virtual ms (low..high)
    "strings",  # a list of non-empty strings
    "reason",  # `true` or a non-empty string (why)
)


@attrs.frozen
class Field:
    """One YAML field of a step (or of a profile, conversation, the scenario): its name,
    what it may hold and what it means. The loader checks values against it, the JSON
    Schema (``docs/scenario.schema.json``) is generated from it, and ``docs/scenarios.md``
    says the same in prose."""

    name: str
    kind: str = attrs.field(validator=attrs.validators.in_(FIELD_KINDS))
    doc: str
    required: bool = False
    low: int = 0
    high: int = MAX_INT
    choices: tuple[str, ...] = ()
    default: Any = None
    #: A regular expression each string (or list item) must match in full, and what it
    #: means in words for messages (``a pytest marker name``).
    pattern: tuple[str, str] | None = None


#: The window of ``at: random``, shared by every step that can fire at a random moment.
WITHIN_MS = Field(
    "within_ms",
    "integer",
    "the window of `at: random`, in virtual ms",
    low=1,
    high=DAY_MS,
    default=1000,
)


class ExpectationFailed(Exception):
    """Raised by a step whose expectation does not hold; the director reports it."""


class StepFields(Protocol):
    """A step's YAML fields, as its :meth:`Step.from_yaml` reads them.

    Every read validates one field and raises :class:`sim.scenario.parse.ScenarioError`
    at that field's ``file:line:column``, naming it as ``<key>: <field>``. Reads of
    ``conv``, ``profile``, turns and phases also check the name is defined.
    """

    def __contains__(self, name: str) -> bool: ...

    def value(self, name: str) -> Any:
        """The field's plain value (any scalar type)."""
        ...

    def string(self, name: str, *, allow_empty: bool = False) -> str: ...

    def integer(self, name: str, *, low: int = 0, high: int) -> int: ...

    def boolean(self, name: str) -> bool: ...

    def choice(self, name: str, options: tuple[str, ...]) -> str: ...

    def conv(self, name: str = "conv", *, allow_all: bool = False) -> str:
        """A defined conversation's name (or ``all`` when ``allow_all``)."""
        ...

    def profile(self, name: str = "profile") -> str:
        """A defined profile's slug."""
        ...

    def phase(self, name: str = "phase") -> str: ...

    def phases(self, name: str = "phases") -> tuple[str, ...]:
        """A list of phases."""
        ...

    def new_turn(self, name: str, conv: str) -> str:
        """A turn label not used before, now naming a turn of ``conv``."""
        ...

    def known_turn(self, name: str, conv: str) -> str:
        """A turn label an earlier step named, for a turn of ``conv``."""
        ...

    def read(self, name: str) -> Any:
        """The field's value, checked against its :class:`Field` (kind, bounds, choices).

        Turn labels need their conversation: read them with :meth:`new_turn` or
        :meth:`known_turn`.
        """
        ...

    def get(self, name: str, default: Any = None) -> Any:
        """:meth:`read` when the field is given, else ``default``."""
        ...

    def wrong_type(self, name: str, expected: str) -> ValueError:
        """The error for a field that holds something other than ``expected``."""
        ...

    def error(self, name: str, problem: str) -> ValueError:
        """The error ``<key>: <field> <problem>`` at the field."""
        ...


class StepEnv(Protocol):
    """What a step may use while it runs: the director's world and its bookkeeping."""

    world: World
    convs: dict[str, Conversation]  # conversation name -> its actor
    labels: dict[tuple[str, str], Prompt]  # (conversation, turn label) -> its prompt
    background: list[tuple[str, SimTask]]  # (conversation name, background switch)
    expected_failures: set[int]  # seqs of surfaced failures an expect_failure matched
    current: int  # the index of the step being played

    def conv_id(self, name: str) -> str:
        """The stored id of a scenario's conversation."""
        ...

    def prompt(self, conv: str, label: str) -> Prompt:
        """The prompt of conversation ``conv``'s turn ``label``; :class:`ExpectationFailed`
        if it has not started."""
        ...

    async def wait_idle(self, name: str) -> None:
        """Until conversation ``name`` (or ``all``) is idle and its background switches fired."""
        ...


#: A step's YAML fields in writing order; written only when not None or the default.
Pairs = list[tuple[str, Any]]


def written(*items: tuple[str, Any] | tuple[str, Any, Any]) -> Pairs:
    """``(key, value)`` is always written; ``(key, value, default)`` when it differs."""
    out: Pairs = []
    for item in items:
        key, value = item[0], item[1]
        if len(item) == 3 and (value is None or value == item[2]):
            continue
        out.append((key, value))
    return out


class Step(ABC):
    """One step of a scenario. Subclasses are frozen attrs classes registered in
    :data:`sim.scenario.model.STEP_KINDS`."""

    __slots__ = ()

    key: ClassVar[str]  # what names the step in a scenario file: `send`, `sleep`, ...
    fields: ClassVar[tuple[Field, ...]] = ()  # its YAML fields, in writing order
    required: ClassVar[tuple[str, ...]] = ()  # (derived from `fields`)
    optional: ClassVar[tuple[str, ...]] = ()  # (derived from `fields`)
    shorthand: ClassVar[str | None] = None  # the field a scalar body stands for: `sleep: 50`
    is_check: ClassVar[bool] = False  # counted in a run's `checks`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.required = tuple(f.name for f in cls.fields if f.required)
        cls.optional = tuple(f.name for f in cls.fields if not f.required)

    @classmethod
    def field(cls, name: str) -> Field:
        """The definition of the step's field ``name``."""
        return next(f for f in cls.fields if f.name == name)

    @classmethod
    @abstractmethod
    def from_yaml(cls, f: StepFields) -> Step:
        """The step from its validated fields (the field names are already checked)."""

    @abstractmethod
    def to_yaml(self) -> Pairs:
        """The fields :meth:`from_yaml` reads back as an equal step, defaults left out."""

    @abstractmethod
    async def run(self, env: StepEnv) -> None:
        """Play the step; raise :class:`ExpectationFailed` when an expectation fails."""

    def conversation(self) -> str | None:
        """The conversation named by the step's ``conv`` field (``all`` for every one)."""
        return None

    def turn_defined(self) -> str | None:
        """The turn label this step gives its turn (a ``send``)."""
        return None

    def turn_needed(self) -> str | None:
        """The turn label this step refers to (named by an earlier ``send``)."""
        return None

    def profile_named(self) -> str | None:
        """The profile this step runs or switches to."""
        return None

    def simpler(self) -> Step | None:
        """One simplification for the shrinker (same fields, less to go wrong), or None."""
        return None
