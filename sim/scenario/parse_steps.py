"""Reading a scenario's ``steps``: each step by its class, ``repeat`` blocks and steps that
name a conversation template, expanded in order into the flat list the director plays.

A step's fields are read by its class (:data:`sim.scenario.model.STEP_KINDS`) through
:class:`StepFieldsReader` (the :class:`sim.scenario.steps.StepFields` of one step), which
checks each value against the step's :class:`~sim.scenario.steps.Field` and the names the
file defines. Turn names are scoped to their conversation. A step that names a template
(``conv: user`` for ``user: {count: 3, ...}``) is read once per conversation of the
template (``user1``, ``user2``, ``user3``); ``repeat: {times: N, steps: [...]}`` reads its
steps N times, ``{i}`` in a turn name standing for the repetition's number (1..N). Each
problem is recorded and reading goes on, so a file's problems are reported together.
"""

from __future__ import annotations

from typing import Any

import yaml

from sim.scenario.model import MAX_STEPS, REPEAT, REPEAT_FIELDS, STEP_KINDS, Located
from sim.scenario.reader import Reader, ScenarioError, type_name


class Names:
    """The names steps may refer to: conversations (and templates), profiles, and the
    turns named so far, per conversation. ``None`` for names that could not be read (a
    broken ``profiles``): then nothing is refused for naming them."""

    def __init__(
        self,
        reader: Reader,
        convs: set[str] | None,
        slugs: set[str] | None,
        templates: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.reader = reader
        self.convs = convs
        self.slugs = slugs
        self.templates = templates or {}
        self.turns: set[tuple[str, str]] = set()  # (conversation, turn label)

    def members(self, name: str) -> tuple[str, ...]:
        """The conversations a ``conv`` value stands for: a template's, or itself."""
        return self.templates.get(name, (name,))


class StepFieldsReader:
    """One step's YAML fields, as its class's ``from_yaml`` reads them
    (:class:`sim.scenario.steps.StepFields`); messages name ``<key>: <field>``.

    ``conv`` is the conversation this reading is for when the step names a template;
    ``repetition`` the number of the enclosing ``repeat``'s round (``{i}``).
    """

    def __init__(
        self,
        names: Names,
        kind: Any,
        nodes: dict[str, yaml.Node],
        *,
        conv: str | None = None,
        repetition: int | None = None,
    ) -> None:
        self._names = names
        self._reader = names.reader
        self._kind = kind
        self._key = kind.key
        self._nodes = nodes
        self._conv = conv
        self._repetition = repetition

    def _what(self, name: str) -> str:
        return f"{self._key}: {name}"

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def value(self, name: str) -> Any:
        return self._reader.scalar(self._nodes[name], self._what(name))

    def string(self, name: str, *, allow_empty: bool = False) -> str:
        return self._reader.string(self._nodes[name], self._what(name), allow_empty=allow_empty)

    def integer(self, name: str, *, low: int = 0, high: int) -> int:
        return self._reader.integer(self._nodes[name], self._what(name), low=low, high=high)

    def boolean(self, name: str) -> bool:
        return self._reader.boolean(self._nodes[name], self._what(name))

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        return self._reader.choice(self._nodes[name], self._what(name), options)

    def read(self, name: str) -> Any:
        field = self._kind.field(name)
        if field.kind in ("conv", "conv_or_all"):
            return self.conv(name, allow_all=field.kind == "conv_or_all")
        if field.kind == "profile":
            return self.profile(name)
        return self._reader.field(self._nodes[name], self._what(name), field)

    def get(self, name: str, default: Any = None) -> Any:
        return self.read(name) if name in self._nodes else default

    def conv(self, name: str = "conv", *, allow_all: bool = False) -> str:
        node, what = self._nodes[name], self._what(name)
        conv = self._reader.string(node, what)
        if allow_all and conv == "all":
            return conv
        known = self._names.convs
        if known is not None and conv not in known:
            extra = " or 'all'" if allow_all else ""
            raise self._reader.error(
                node,
                f"{what}: unknown conversation {conv!r}; expected "
                f"one of {', '.join(sorted(known))}{extra}",
            )
        if self._conv is not None and conv in self._names.templates:
            return self._conv
        return conv

    def profile(self, name: str = "profile") -> str:
        node, what = self._nodes[name], self._what(name)
        slug = self._reader.string(node, what)
        if self._names.slugs is not None and slug not in self._names.slugs:
            raise self._reader.error(
                node,
                f"{what}: unknown profile {slug!r}; expected one of "
                f"{', '.join(sorted(self._names.slugs))}",
            )
        return slug

    def phase(self, name: str = "phase") -> str:
        return self._reader.field(self._nodes[name], self._what(name), self._kind.field(name))

    def phases(self, name: str = "phases") -> tuple[str, ...]:
        return self._reader.field(self._nodes[name], self._what(name), self._kind.field(name))

    def _label(self, name: str) -> str:
        node, what = self._nodes[name], self._what(name)
        label = self._reader.string(node, what)
        if "{i}" in label:
            if self._repetition is None:
                raise self._reader.error(
                    node, f"{what}: {{i}} stands for a repetition's number; use it inside repeat"
                )
            label = label.replace("{i}", str(self._repetition))
        return label

    def new_turn(self, name: str, conv: str) -> str:
        node, what = self._nodes[name], self._what(name)
        label = self._label(name)
        if (conv, label) in self._names.turns:
            hint = " (inside repeat, {i} in the name makes one per round)" * (
                self._repetition is not None
            )
            raise self._reader.error(
                node,
                f"{what} name {label!r} is already used by an earlier send in conversation "
                f"{conv!r}; turn names must be unique in a conversation{hint}",
            )
        self._names.turns.add((conv, label))
        return label

    def known_turn(self, name: str, conv: str) -> str:
        node, what = self._nodes[name], self._what(name)
        label = self._label(name)
        turns = self._names.turns
        if (conv, label) not in turns:
            others = sorted(c for c, t in turns if t == label)
            if others:
                raise self._reader.error(
                    node,
                    f"{what}: conversation {conv!r} has no turn {label!r} (a turn {label!r} "
                    f"belongs to conversation {others[0]!r}); turn names are scoped to their "
                    "conversation",
                )
            known = ", ".join(sorted(t for c, t in turns if c == conv)) or "none yet"
            raise self._reader.error(
                node,
                f"{what}: unknown turn {label!r}; name it in an "
                f"earlier send step of conversation {conv!r} (its known turns: {known})",
            )
        return label

    def wrong_type(self, name: str, expected: str) -> ScenarioError:
        node = self._nodes[name]
        value = self._reader.scalar(node, self._what(name))
        return self._reader.error(
            node, f"{self._what(name)} must be {expected}, got {type_name(value)}"
        )

    def error(self, name: str, problem: str) -> ScenarioError:
        return self._reader.error(self._nodes[name], f"{self._what(name)} {problem}")


class StepsReader:
    """Reads a ``steps`` list (and the lists of its ``repeat`` blocks) into located steps."""

    def __init__(self, reader: Reader, names: Names) -> None:
        self.reader = reader
        self.names = names
        self.out: list[Located] = []

    def read(self, node: yaml.Node) -> tuple[Located, ...]:
        items = self.reader.sequence(node, "steps")
        if not items:
            raise self.reader.error(node, "steps is empty; a scenario needs at least one step")
        self._list(items, "step", None)
        return tuple(self.out)

    def _list(self, items: list[yaml.Node], what: str, repetition: int | None) -> bool:
        """Read each item; False when any of them had a problem."""
        ok = True
        kinds = ", ".join((*STEP_KINDS, REPEAT))
        for index, item in enumerate(items, start=1):
            label = f"{what} {index}"
            before = len(self.reader.problems)
            with self.reader.collecting():
                if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
                    raise self.reader.error(
                        item,
                        f"{label} must be a mapping with exactly one step "
                        f"kind as key; expected one of {kinds}",
                    )
                key_node, body = item.value[0]
                key = self.reader.scalar(key_node, label)
                if key == REPEAT:
                    self._repeat(body, label)
                elif key not in STEP_KINDS:
                    raise self.reader.error(
                        key_node, f"unknown step {key!r}; expected one of {kinds}"
                    )
                else:
                    self._step(STEP_KINDS[key], key_node, body, label, repetition)
            ok = ok and len(self.reader.problems) == before
        return ok

    def _repeat(self, body: yaml.Node, label: str) -> None:
        what = f"{label} ({REPEAT})"
        f = self.reader.fields(body, what, ("times", "steps"), ())
        times = self.reader.field(f["times"], f"{REPEAT}: times", REPEAT_FIELDS[0])
        items = self.reader.sequence(f["steps"], f"{REPEAT}: steps")
        if not items:
            raise self.reader.error(f["steps"], f"{REPEAT}: steps is empty")
        if len(self.out) + times * len(items) > MAX_STEPS:  # at least that many: refuse early
            raise self.reader.error(
                f["times"], f"the steps expand to more than {MAX_STEPS} steps; use fewer"
            )
        for round_ in range(1, times + 1):
            if not self._list(items, f"{REPEAT} step", round_):
                return  # the next rounds would find the same problems again

    def _step(
        self,
        kind: Any,
        key_node: yaml.Node,
        body: yaml.Node,
        label: str,
        repetition: int | None,
    ) -> None:
        key = kind.key
        try:
            if isinstance(body, yaml.ScalarNode) and kind.shorthand is not None:
                nodes = {kind.shorthand: body}
            elif isinstance(body, yaml.ScalarNode) and body.value == "" and not kind.required:
                nodes = {}
            else:
                nodes = self.reader.fields(body, f"{label} ({key})", kind.required, kind.optional)
        except ScenarioError:
            self._salvage_turn(kind, body, repetition)
            raise
        where = self.reader.where(key_node)
        conv = nodes.get("conv")
        named = conv.value if isinstance(conv, yaml.ScalarNode) else None
        members = self.names.templates.get(named, (None,)) if named else (None,)
        for member in members:
            fields = StepFieldsReader(self.names, kind, nodes, conv=member, repetition=repetition)
            try:
                step = kind.from_yaml(fields)
            except ScenarioError:
                self._salvage_turn(kind, body, repetition)
                raise
            if len(self.out) >= MAX_STEPS:
                raise self.reader.error(
                    key_node, f"the steps expand to more than {MAX_STEPS} steps; use fewer"
                )
            self.out.append(Located(len(self.out) + 1, step, where))

    def _salvage_turn(self, kind: Any, body: yaml.Node, repetition: int | None) -> None:
        """A send that failed still names its turn (for each conversation it names), so
        the later steps naming that turn are not reported as errors too."""
        if kind.key != "send" or not isinstance(body, yaml.MappingNode):
            return
        raw = {
            k.value: v.value
            for k, v in body.value
            if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)
        }
        conv, label = raw.get("conv"), raw.get("turn")
        if not conv or not label:
            return
        if repetition is not None:
            label = label.replace("{i}", str(repetition))
        for member in self.names.members(conv):
            self.names.turns.add((member, label))
