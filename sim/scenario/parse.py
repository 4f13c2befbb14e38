"""Scenario files: YAML, one scenario per file, validated at the edge into frozen values.

Every value keeps the line and column it came from, so a bad file fails once, early, with
``file:line:column: what is wrong; expected what``. The complete reference is
``docs/scenarios.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import yaml

from persisters.model import PHASES
from sim.runtime.faults import KINDS, POINTS
from sim.runtime.profiles import Profile, ProfileRegistry

try:  # the C loader is ~20x faster on large files
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_INT = 2**53
MAX_DEPTH = 32
OUTCOMES = ("completed", "failed", "cancelled", "refused")


class ScenarioError(ValueError):
    """A scenario file is malformed. ``str()`` is ``file:line:col: message``."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{path}:{line}:{column}: {message}")


@attrs.frozen
class Where:
    """Where a step came from, for messages and the replay line."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


# -- steps ------------------------------------------------------------------------------


@attrs.frozen
class Send:
    conv: str
    prompt: str
    turn: str | None = None
    wait: bool = True
    profile: str | None = None


@attrs.frozen
class SwitchProfile:
    conv: str
    profile: str
    at: int | str | None = None  # None: now; int: ms from now (background); "random"
    within_ms: int = 1000


@attrs.frozen
class WaitIdle:
    conv: str  # a conversation name or "all"


@attrs.frozen
class Sleep:
    ms: int


@attrs.frozen
class Cancel:
    conv: str


@attrs.frozen
class Crash:
    conv: str


@attrs.frozen
class MakeReadOnly:
    """The database stops accepting writes (a file turned read-only mid-run)."""


@attrs.frozen
class InjectFault:
    point: str = "store.save"
    conv: str | None = None
    phase: str | None = None
    pipeline: str | None = None
    kind: str = "permanent"
    times: int = 1
    skip: int = 0


@attrs.frozen
class Resave:
    """A second writer (the real system's command-line persister) re-saves a turn."""

    conv: str
    turn: str
    runtime_key: str | None = None  # explicit value; or take it from ``source``
    source: str = "metadata"  # metadata | pointer
    refusal_expected: bool = False


@attrs.frozen
class ExpectTurn:
    conv: str
    turn: str
    runtime_key: str | None = None
    phases: tuple[str, ...] | None = None
    outcome: str | None = None
    same_inference: bool = True


@attrs.frozen
class ExpectTurnCount:
    conv: str
    count: int


@attrs.frozen
class ExpectConversation:
    conv: str
    current_runtime_key: str | None = None
    session: str | None = None


@attrs.frozen
class ExpectFailure:
    conv: str | None = None
    turn: str | None = None
    phase: str | None = None
    pipeline: str | None = None
    count: int | None = None  # None: at least one
    contains: str | None = None


Step = (
    Send
    | SwitchProfile
    | WaitIdle
    | Sleep
    | Cancel
    | Crash
    | MakeReadOnly
    | InjectFault
    | Resave
    | ExpectTurn
    | ExpectTurnCount
    | ExpectConversation
    | ExpectFailure
)


@attrs.frozen
class Located:
    """A step with its position in the file."""

    index: int
    kind: str
    step: Step
    where: Where


@attrs.frozen
class ConversationSpec:
    name: str
    profile: str
    session: str | None = None


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


# -- reading YAML nodes with positions --------------------------------------------------


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node | None, message: str) -> ScenarioError:
        if node is None:
            return ScenarioError(self.path, 1, 1, message)
        mark = node.start_mark
        return ScenarioError(self.path, mark.line + 1, mark.column + 1, message)

    def where(self, node: yaml.Node) -> Where:
        return Where(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def scalar(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
            raise self.error(node, f"{what} must be a single value, got {kind}")
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise self.error(node, f"{what}: unreadable value ({exc})") from None

    def string(self, node: yaml.Node, what: str, *, allow_empty: bool = False) -> str:
        value = self.scalar(node, what)
        if isinstance(value, bool) or value is None or isinstance(value, int | float):
            if value is None or isinstance(value, bool | float):
                raise self.error(node, f"{what} must be a string, got {_type(value)}")
            value = str(value)
        if not isinstance(value, str):
            raise self.error(node, f"{what} must be a string, got {_type(value)}")
        if not allow_empty and not value.strip():
            raise self.error(node, f"{what} must not be empty")
        if len(value) > 100_000:
            raise self.error(node, f"{what} is too long ({len(value)} characters; at most 100000)")
        return value

    def integer(self, node: yaml.Node, what: str, *, low: int = 0, high: int = MAX_INT) -> int:
        if (
            isinstance(node, yaml.ScalarNode)
            and node.tag.endswith(":int")
            and len(node.value.lstrip("+-").replace("_", "")) > len(str(MAX_INT)) + 2
        ):
            raise self.error(
                node,
                f"{what} must be between {low} and {high}, got a {len(node.value)}-digit number",
            )
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, f"{what} must be an integer, got {_type(value)}")
        if not low <= value <= high:
            raise self.error(node, f"{what} must be between {low} and {high}, got {value}")
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, what)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false, got {_type(value)}")
        return value

    def choice(self, node: yaml.Node, what: str, options: tuple[str, ...]) -> str:
        value = self.string(node, what)
        if value not in options:
            raise self.error(
                node, f"{what} {value!r} is not known; expected one of {', '.join(options)}"
            )
        return value

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(
                node, f"{what} must be a mapping (key: value lines), got {_node_kind(node)}"
            )
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key in {what}")
            if not isinstance(key, str):
                raise self.error(key_node, f"keys in {what} must be strings, got {_type(key)}")
            if key in out:
                raise self.error(key_node, f"duplicate key {key!r} in {what}")
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list, got {_node_kind(node)}")
        return list(node.value)

    def fields(
        self, node: yaml.Node, what: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, yaml.Node]:
        items = self.mapping(node, what)
        for key, (key_node, _) in items.items():
            if key not in required and key not in optional:
                allowed = ", ".join((*required, *optional))
                raise self.error(
                    key_node, f"unknown field {key!r} in {what}; expected one of {allowed}"
                )
        for key in required:
            if key not in items:
                raise self.error(node, f"{what} is missing required field {key!r}")
        return {k: v for k, (_, v) in items.items()}


def _type(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"the value {node.value!r}"


def _check_depth(reader: _Reader, node: yaml.Node) -> None:
    stack = [(node, 0)]
    deepest: dict[int, int] = {}  # aliases share nodes: visit each again only deeper
    while stack:
        current, depth = stack.pop()
        if deepest.get(id(current), -1) >= depth:
            continue
        deepest[id(current)] = depth
        if depth > MAX_DEPTH:
            raise reader.error(
                current,
                f"nesting deeper than {MAX_DEPTH} levels is not a scenario; check the indentation",
            )
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in current.value)


# -- the loader -------------------------------------------------------------------------

TOP_REQUIRED = ("name", "profiles", "conversations", "steps")
TOP_OPTIONAL = ("description", "seed", "store_latency_ms", "retry")
PROFILE_FIELDS = ("latency_ms", "jitter_ms", "tool_rounds", "tool_latency_ms", "replies")


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate one scenario file; raise :class:`ScenarioError` on any problem."""
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        raise ScenarioError(name, 1, 1, f"cannot read file: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(
            name, 1, 1, f"file is {len(raw)} bytes; scenarios are at most {MAX_FILE_BYTES}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(
            name, line, 1, "not UTF-8 text (binary file?); scenario files are YAML"
        ) from None
    return parse_scenario(text, name)


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    """Validate scenario YAML text (``path`` is used in messages)."""
    reader = _Reader(path)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ScenarioError(
            path, line, 1, "contains a NUL byte (binary file?); scenario files are YAML text"
        )
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ScenarioError(path, line, col, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        pos = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise ScenarioError(
            path, line, col, f"invalid YAML: {exc.reason} (character {exc.character!r})"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, 1, 1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ScenarioError(path, 1, 1, "nesting too deep to be a scenario") from None
    if node is None:
        raise ScenarioError(
            path, 1, 1, f"empty file; expected a scenario mapping with {', '.join(TOP_REQUIRED)}"
        )
    _check_depth(reader, node)
    top = reader.fields(node, "the scenario", TOP_REQUIRED, TOP_OPTIONAL)
    scenario_name = reader.string(top["name"], "name")
    seed = reader.integer(top["seed"], "seed") if "seed" in top else 0
    profiles = _profiles(reader, top["profiles"])
    slugs = {p.slug for p in profiles}
    conversations = _conversations(reader, top["conversations"], slugs)
    retry_attempts, retry_backoff = 3, 10
    if "retry" in top:
        retry = reader.fields(top["retry"], "retry", (), ("attempts", "backoff_ms"))
        if "attempts" in retry:
            retry_attempts = reader.integer(retry["attempts"], "retry.attempts", low=1, high=100)
        if "backoff_ms" in retry:
            retry_backoff = reader.integer(retry["backoff_ms"], "retry.backoff_ms", high=60_000)
    steps = _steps(reader, top["steps"], {c.name for c in conversations}, slugs)
    return Scenario(
        name=scenario_name,
        path=path,
        seed=seed,
        profiles=profiles,
        conversations=conversations,
        steps=steps,
        description=reader.string(top["description"], "description", allow_empty=True)
        if "description" in top
        else "",
        store_latency_ms=reader.integer(top["store_latency_ms"], "store_latency_ms", high=3_600_000)
        if "store_latency_ms" in top
        else 0,
        retry_attempts=retry_attempts,
        retry_backoff_ms=retry_backoff,
    )


def _profiles(reader: _Reader, node: yaml.Node) -> tuple[Profile, ...]:
    out = []
    items = reader.mapping(node, "profiles")
    if not items:
        raise reader.error(
            node, "profiles is empty; define at least one profile with a runtime_key"
        )
    for slug, (_, value) in items.items():
        what = f"profile {slug!r}"
        f = reader.fields(value, what, ("runtime_key",), PROFILE_FIELDS)
        kwargs: dict[str, Any] = {}
        for key in ("latency_ms", "jitter_ms", "tool_latency_ms"):
            if key in f:
                kwargs[key] = reader.integer(f[key], f"{what}: {key}", high=86_400_000)
        if "tool_rounds" in f:
            kwargs["tool_rounds"] = reader.integer(
                f["tool_rounds"], f"{what}: tool_rounds", high=100
            )
        if "replies" in f:
            kwargs["replies"] = tuple(
                reader.string(n, f"{what}: replies item")
                for n in reader.sequence(f["replies"], f"{what}: replies")
            )
        runtime = reader.string(f["runtime_key"], f"{what}: runtime_key", allow_empty=True)
        out.append(Profile(slug=slug, runtime_key=runtime.strip(), **kwargs))
    return tuple(out)


def _conversations(
    reader: _Reader, node: yaml.Node, slugs: set[str]
) -> tuple[ConversationSpec, ...]:
    out = []
    items = reader.mapping(node, "conversations")
    if not items:
        raise reader.error(node, "conversations is empty; define at least one")
    for name, (_, value) in items.items():
        what = f"conversation {name!r}"
        f = reader.fields(value, what, ("profile",), ("session",))
        profile = reader.string(f["profile"], f"{what}: profile")
        if profile not in slugs:
            raise reader.error(
                f["profile"],
                f"{what}: unknown profile {profile!r}; expected one of {', '.join(sorted(slugs))}",
            )
        session = reader.string(f["session"], f"{what}: session") if "session" in f else None
        out.append(ConversationSpec(name=name, profile=profile, session=session))
    return tuple(out)


class _StepContext:
    def __init__(self, reader: _Reader, convs: set[str], slugs: set[str]) -> None:
        self.reader = reader
        self.convs = convs
        self.slugs = slugs
        self.turns: dict[str, str] = {}  # turn label -> conversation

    def conv(self, node: yaml.Node, what: str, *, allow_all: bool = False) -> str:
        name = self.reader.string(node, what)
        if allow_all and name == "all":
            return name
        if name not in self.convs:
            extra = " or 'all'" if allow_all else ""
            raise self.reader.error(
                node,
                f"{what}: unknown conversation {name!r}; expected "
                f"one of {', '.join(sorted(self.convs))}{extra}",
            )
        return name

    def profile(self, node: yaml.Node, what: str) -> str:
        slug = self.reader.string(node, what)
        if slug not in self.slugs:
            raise self.reader.error(
                node,
                f"{what}: unknown profile {slug!r}; expected one of "
                f"{', '.join(sorted(self.slugs))}",
            )
        return slug

    def known_turn(self, node: yaml.Node, what: str, conv: str) -> str:
        label = self.reader.string(node, what)
        if label not in self.turns:
            known = ", ".join(sorted(self.turns)) or "none yet"
            raise self.reader.error(
                node,
                f"{what}: unknown turn {label!r}; name it in an "
                f"earlier send step (known turns: {known})",
            )
        if self.turns[label] != conv:
            raise self.reader.error(
                node,
                f"{what}: turn {label!r} belongs to conversation "
                f"{self.turns[label]!r}, not {conv!r}",
            )
        return label

    def phase(self, node: yaml.Node, what: str) -> str:
        return self.reader.choice(node, what, PHASES)


def _step_send(ctx: _StepContext, f: dict[str, yaml.Node]) -> Send:
    r = ctx.reader
    conv = ctx.conv(f["conv"], "send: conv")
    label = None
    if "turn" in f:
        label = r.string(f["turn"], "send: turn")
        if label in ctx.turns:
            raise r.error(
                f["turn"],
                f"send: turn name {label!r} is already used by an earlier "
                "send; turn names must be unique in a scenario",
            )
        ctx.turns[label] = conv
    return Send(
        conv=conv,
        prompt=r.string(f["prompt"], "send: prompt"),
        turn=label,
        wait=r.boolean(f["wait"], "send: wait") if "wait" in f else True,
        profile=ctx.profile(f["profile"], "send: profile") if "profile" in f else None,
    )


def _step_switch(ctx: _StepContext, f: dict[str, yaml.Node]) -> SwitchProfile:
    r = ctx.reader
    at: int | str | None = None
    if "at" in f:
        value = r.scalar(f["at"], "switch_profile: at")
        if value == "random":
            at = "random"
        elif isinstance(value, int) and not isinstance(value, bool):
            at = r.integer(f["at"], "switch_profile: at", high=86_400_000)
        else:
            raise r.error(
                f["at"],
                "switch_profile: at must be 'random' or a delay in virtual "
                f"milliseconds, got {_type(value)}",
            )
    return SwitchProfile(
        conv=ctx.conv(f["conv"], "switch_profile: conv"),
        profile=ctx.profile(f["profile"], "switch_profile: profile"),
        at=at,
        within_ms=r.integer(f["within_ms"], "switch_profile: within_ms", low=1, high=86_400_000)
        if "within_ms" in f
        else 1000,
    )


def _step_fault(ctx: _StepContext, f: dict[str, yaml.Node]) -> InjectFault:
    r = ctx.reader
    return InjectFault(
        point=r.choice(f["point"], "inject_fault: point", POINTS) if "point" in f else "store.save",
        conv=ctx.conv(f["conv"], "inject_fault: conv") if "conv" in f else None,
        phase=ctx.phase(f["phase"], "inject_fault: phase") if "phase" in f else None,
        pipeline=r.choice(f["pipeline"], "inject_fault: pipeline", ("snapshot", "final"))
        if "pipeline" in f
        else None,
        kind=r.choice(f["kind"], "inject_fault: kind", KINDS) if "kind" in f else "permanent",
        times=r.integer(f["times"], "inject_fault: times", low=1, high=1_000_000)
        if "times" in f
        else 1,
        skip=r.integer(f["skip"], "inject_fault: skip", high=1_000_000) if "skip" in f else 0,
    )


def _step_resave(ctx: _StepContext, f: dict[str, yaml.Node]) -> Resave:
    r = ctx.reader
    conv = ctx.conv(f["conv"], "resave: conv")
    return Resave(
        conv=conv,
        turn=ctx.known_turn(f["turn"], "resave: turn", conv),
        runtime_key=r.string(f["runtime_key"], "resave: runtime_key")
        if "runtime_key" in f
        else None,
        source=r.choice(f["from"], "resave: from", ("metadata", "pointer"))
        if "from" in f
        else "metadata",
        refusal_expected=r.boolean(f["refusal_expected"], "resave: refusal_expected")
        if "refusal_expected" in f
        else False,
    )


def _step_expect_turn(ctx: _StepContext, f: dict[str, yaml.Node]) -> ExpectTurn:
    r = ctx.reader
    conv = ctx.conv(f["conv"], "expect_turn: conv")
    phases = None
    if "phases" in f:
        phases = tuple(
            ctx.phase(n, "expect_turn: phases item")
            for n in r.sequence(f["phases"], "expect_turn: phases")
        )
    return ExpectTurn(
        conv=conv,
        turn=ctx.known_turn(f["turn"], "expect_turn: turn", conv),
        runtime_key=r.string(f["runtime_key"], "expect_turn: runtime_key")
        if "runtime_key" in f
        else None,
        phases=phases,
        outcome=r.choice(f["outcome"], "expect_turn: outcome", OUTCOMES)
        if "outcome" in f
        else None,
    )


def _step_expect_failure(ctx: _StepContext, f: dict[str, yaml.Node]) -> ExpectFailure:
    r = ctx.reader
    conv = ctx.conv(f["conv"], "expect_failure: conv") if "conv" in f else None
    turn = None
    if "turn" in f:
        if conv is None:
            raise r.error(f["turn"], "expect_failure: turn needs conv as well")
        turn = ctx.known_turn(f["turn"], "expect_failure: turn", conv)
    return ExpectFailure(
        conv=conv,
        turn=turn,
        phase=ctx.phase(f["phase"], "expect_failure: phase") if "phase" in f else None,
        pipeline=r.choice(f["pipeline"], "expect_failure: pipeline", ("snapshot", "final"))
        if "pipeline" in f
        else None,
        count=r.integer(f["count"], "expect_failure: count", high=1_000_000)
        if "count" in f
        else None,
        contains=r.string(f["contains"], "expect_failure: contains") if "contains" in f else None,
    )


_StepParser = Callable[[_StepContext, dict[str, yaml.Node]], Step]

#: step kind -> (required fields, optional fields, parser, scalar shorthand field)
STEP_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], _StepParser, str | None]] = {
    "send": (("conv", "prompt"), ("turn", "wait", "profile"), _step_send, None),
    "switch_profile": (("conv", "profile"), ("at", "within_ms"), _step_switch, None),
    "wait_idle": (
        ("conv",),
        (),
        lambda c, f: WaitIdle(c.conv(f["conv"], "wait_idle: conv", allow_all=True)),
        "conv",
    ),
    "sleep": (
        ("ms",),
        (),
        lambda c, f: Sleep(c.reader.integer(f["ms"], "sleep: ms", high=86_400_000)),
        "ms",
    ),
    "cancel": (("conv",), (), lambda c, f: Cancel(c.conv(f["conv"], "cancel: conv")), "conv"),
    "crash": (("conv",), (), lambda c, f: Crash(c.conv(f["conv"], "crash: conv")), "conv"),
    "make_readonly": ((), (), lambda c, f: MakeReadOnly(), None),
    "inject_fault": (
        (),
        ("point", "conv", "phase", "pipeline", "kind", "times", "skip"),
        _step_fault,
        None,
    ),
    "resave": (("conv", "turn"), ("runtime_key", "from", "refusal_expected"), _step_resave, None),
    "expect_turn": (
        ("conv", "turn"),
        ("runtime_key", "phases", "outcome"),
        _step_expect_turn,
        None,
    ),
    "expect_turn_count": (
        ("conv", "count"),
        (),
        lambda c, f: ExpectTurnCount(
            c.conv(f["conv"], "expect_turn_count: conv"),
            c.reader.integer(f["count"], "expect_turn_count: count", high=10_000_000),
        ),
        None,
    ),
    "expect_conversation": (
        ("conv",),
        ("current_runtime_key", "session"),
        lambda c, f: ExpectConversation(
            c.conv(f["conv"], "expect_conversation: conv"),
            c.reader.string(
                f["current_runtime_key"],
                "expect_conversation: current_runtime_key",
                allow_empty=True,
            )
            if "current_runtime_key" in f
            else None,
            c.reader.string(f["session"], "expect_conversation: session")
            if "session" in f
            else None,
        ),
        None,
    ),
    "expect_failure": (
        (),
        ("conv", "turn", "phase", "pipeline", "count", "contains"),
        _step_expect_failure,
        None,
    ),
}


def _steps(
    reader: _Reader, node: yaml.Node, convs: set[str], slugs: set[str]
) -> tuple[Located, ...]:
    ctx = _StepContext(reader, convs, slugs)
    out = []
    items = reader.sequence(node, "steps")
    if not items:
        raise reader.error(node, "steps is empty; a scenario needs at least one step")
    for index, item in enumerate(items, start=1):
        kinds = ", ".join(STEP_KINDS)
        if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
            raise reader.error(
                item,
                f"step {index} must be a mapping with exactly one step "
                f"kind as key; expected one of {kinds}",
            )
        key_node, body = item.value[0]
        kind = reader.scalar(key_node, f"step {index}")
        if kind not in STEP_KINDS:
            raise reader.error(key_node, f"unknown step {kind!r}; expected one of {kinds}")
        required, optional, parse, shorthand = STEP_KINDS[kind]
        if isinstance(body, yaml.ScalarNode) and shorthand is not None:
            fields = {shorthand: body}
        elif isinstance(body, yaml.ScalarNode) and body.value == "" and not required:
            fields = {}
        else:
            fields = reader.fields(body, f"step {index} ({kind})", required, optional)
        out.append(Located(index, kind, parse(ctx, fields), reader.where(key_node)))
    return tuple(out)


def discover(paths: list[str]) -> list[Path]:
    """Scenario files under the given files and folders (``*.yaml``/``*.yml``), sorted."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml")))
        elif p.exists():
            found.append(p)
        else:
            raise ScenarioError(raw, 1, 1, "no such file or directory")
    return found
