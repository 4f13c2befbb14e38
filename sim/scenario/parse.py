"""Scenario files: YAML, one scenario per file, validated at the edge into frozen values.

Every value keeps the line and column it came from, so a bad file fails once, early, with
``file:line:column: what is wrong; expected what``. Positions are what an editor shows:
a line ends at ``\\n`` (so ``\\r\\n`` too); a lone ``\\r``, NEL (U+0085) and the Unicode
line and paragraph separators are characters within a line, although YAML counts them as
line breaks; columns count characters from 1; a byte order mark takes no column. The
steps' own fields are read by their classes (:data:`sim.scenario.model.STEP_KINDS`) through
:class:`sim.scenario.steps.StepFields`. The complete reference is ``docs/scenarios.md``.
"""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path
from typing import Any

import yaml

from persisters.model import PHASES
from sim.runtime.conversation import SESSION_SOURCES
from sim.runtime.profiles import PHASE_PATTERNS, Profile
from sim.scenario.model import STEP_KINDS, ConversationSpec, Located, Scenario, Where

try:  # the C loader is ~20x faster on large files
    from yaml import CSafeLoader as _Loader

    #: libyaml reports a refused character's position in bytes of the UTF-8 text
    _READER_POSITION_IN_BYTES = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

    _READER_POSITION_IN_BYTES = False

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_INT = 2**53
MAX_DEPTH = 32
BOM = "\ufeff"


class ScenarioError(ValueError):
    """A scenario file is malformed. ``str()`` is ``file:line:col: message``."""

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{path}:{line}:{column}: {message}")


class _Lines:
    """Line and column of a character offset in a text, counting only ``\\n`` as a break."""

    _BREAK = re.compile("\n")

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None  # offsets where lines start, built on demand

    def position(self, index: int) -> tuple[int, int]:
        """The 1-based (line, column) of the character at ``index``."""
        if self._starts is None:
            self._starts = [0, *(m.end() for m in self._BREAK.finditer(self._text))]
        index = max(0, min(index, len(self._text)))
        line = bisect.bisect_right(self._starts, index)
        return line, index - self._starts[line - 1] + 1


# -- reading YAML nodes with positions --------------------------------------------------


class _Reader:
    def __init__(self, path: str, lines: _Lines) -> None:
        self.path = path
        self.lines = lines
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node | None, message: str) -> ScenarioError:
        if node is None:
            return ScenarioError(self.path, 1, 1, message)
        line, column = self.lines.position(node.start_mark.index)
        return ScenarioError(self.path, line, column, message)

    def where(self, node: yaml.Node) -> Where:
        line, column = self.lines.position(node.start_mark.index)
        return Where(self.path, line, column)

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
PROFILE_FIELDS = (
    "latency_ms",
    "jitter_ms",
    "tool_rounds",
    "tool_latency_ms",
    "replies",
    "phase_pattern",
)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate one scenario file; raise :class:`ScenarioError` on any problem."""
    name = os.fspath(path)
    return parse_scenario(read_scenario_text(name), name)


def read_scenario_text(path: str | os.PathLike[str]) -> str:
    """A scenario file's text, as :func:`load_scenario` reads it (size and UTF-8 checked)."""
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
    return text


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    """Validate scenario YAML text (``path`` is used in messages)."""
    # YAML skips a leading byte order mark (libyaml without counting it): so do positions
    text = text.removeprefix(BOM)
    lines = _Lines(text)
    reader = _Reader(path, lines)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ScenarioError(
            path, line, 1, "contains a NUL byte (binary file?); scenario files are YAML text"
        )
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = lines.position(mark.index) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ScenarioError(path, line, col, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        pos = exc.position
        if _READER_POSITION_IN_BYTES:
            pos = len(text.encode("utf-8")[: max(0, pos)].decode("utf-8", "ignore"))
        line, col = lines.position(pos)
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
        if "phase_pattern" in f:
            kwargs["phase_pattern"] = reader.choice(
                f["phase_pattern"], f"{what}: phase_pattern", PHASE_PATTERNS
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
        f = reader.fields(value, what, ("profile",), ("session", "session_from"))
        profile = reader.string(f["profile"], f"{what}: profile")
        if profile not in slugs:
            raise reader.error(
                f["profile"],
                f"{what}: unknown profile {profile!r}; expected one of {', '.join(sorted(slugs))}",
            )
        session = reader.string(f["session"], f"{what}: session") if "session" in f else None
        source = (
            reader.choice(f["session_from"], f"{what}: session_from", SESSION_SOURCES)
            if "session_from" in f
            else "conversation"
        )
        out.append(
            ConversationSpec(name=name, profile=profile, session=session, session_from=source)
        )
    return tuple(out)


# -- steps ------------------------------------------------------------------------------


class _Names:
    """The names steps may refer to: conversations, profiles, and turns named so far."""

    def __init__(self, reader: _Reader, convs: set[str], slugs: set[str]) -> None:
        self.reader = reader
        self.convs = convs
        self.slugs = slugs
        self.turns: dict[str, str] = {}  # turn label -> conversation


class _StepFields:
    """One step's YAML fields, as its class's ``from_yaml`` reads them
    (:class:`sim.scenario.steps.StepFields`); messages name ``<key>: <field>``."""

    def __init__(self, names: _Names, key: str, nodes: dict[str, yaml.Node]) -> None:
        self._names = names
        self._reader = names.reader
        self._key = key
        self._nodes = nodes

    def _what(self, name: str) -> str:
        return f"{self._key}: {name}"

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def value(self, name: str) -> Any:
        return self._reader.scalar(self._nodes[name], self._what(name))

    def string(self, name: str, *, allow_empty: bool = False) -> str:
        return self._reader.string(self._nodes[name], self._what(name), allow_empty=allow_empty)

    def integer(self, name: str, *, low: int = 0, high: int = MAX_INT) -> int:
        return self._reader.integer(self._nodes[name], self._what(name), low=low, high=high)

    def boolean(self, name: str) -> bool:
        return self._reader.boolean(self._nodes[name], self._what(name))

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        return self._reader.choice(self._nodes[name], self._what(name), options)

    def conv(self, name: str = "conv", *, allow_all: bool = False) -> str:
        node, what = self._nodes[name], self._what(name)
        conv = self._reader.string(node, what)
        if allow_all and conv == "all":
            return conv
        if conv not in self._names.convs:
            extra = " or 'all'" if allow_all else ""
            raise self._reader.error(
                node,
                f"{what}: unknown conversation {conv!r}; expected "
                f"one of {', '.join(sorted(self._names.convs))}{extra}",
            )
        return conv

    def profile(self, name: str = "profile") -> str:
        node, what = self._nodes[name], self._what(name)
        slug = self._reader.string(node, what)
        if slug not in self._names.slugs:
            raise self._reader.error(
                node,
                f"{what}: unknown profile {slug!r}; expected one of "
                f"{', '.join(sorted(self._names.slugs))}",
            )
        return slug

    def phase(self, name: str = "phase") -> str:
        return self._reader.choice(self._nodes[name], self._what(name), PHASES)

    def phases(self, name: str = "phases") -> tuple[str, ...]:
        what = self._what(name)
        return tuple(
            self._reader.choice(n, f"{what} item", PHASES)
            for n in self._reader.sequence(self._nodes[name], what)
        )

    def new_turn(self, name: str, conv: str) -> str:
        node, what = self._nodes[name], self._what(name)
        label = self._reader.string(node, what)
        if label in self._names.turns:
            raise self._reader.error(
                node,
                f"{what} name {label!r} is already used by an earlier "
                "send; turn names must be unique in a scenario",
            )
        self._names.turns[label] = conv
        return label

    def known_turn(self, name: str, conv: str) -> str:
        node, what = self._nodes[name], self._what(name)
        label = self._reader.string(node, what)
        turns = self._names.turns
        if label not in turns:
            known = ", ".join(sorted(turns)) or "none yet"
            raise self._reader.error(
                node,
                f"{what}: unknown turn {label!r}; name it in an "
                f"earlier send step (known turns: {known})",
            )
        if turns[label] != conv:
            raise self._reader.error(
                node,
                f"{what}: turn {label!r} belongs to conversation {turns[label]!r}, not {conv!r}",
            )
        return label

    def wrong_type(self, name: str, expected: str) -> ScenarioError:
        node = self._nodes[name]
        value = self._reader.scalar(node, self._what(name))
        return self._reader.error(
            node, f"{self._what(name)} must be {expected}, got {_type(value)}"
        )

    def error(self, name: str, problem: str) -> ScenarioError:
        return self._reader.error(self._nodes[name], f"{self._what(name)} {problem}")


def _steps(
    reader: _Reader, node: yaml.Node, convs: set[str], slugs: set[str]
) -> tuple[Located, ...]:
    names = _Names(reader, convs, slugs)
    out = []
    items = reader.sequence(node, "steps")
    if not items:
        raise reader.error(node, "steps is empty; a scenario needs at least one step")
    kinds = ", ".join(STEP_KINDS)
    for index, item in enumerate(items, start=1):
        if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
            raise reader.error(
                item,
                f"step {index} must be a mapping with exactly one step "
                f"kind as key; expected one of {kinds}",
            )
        key_node, body = item.value[0]
        key = reader.scalar(key_node, f"step {index}")
        if key not in STEP_KINDS:
            raise reader.error(key_node, f"unknown step {key!r}; expected one of {kinds}")
        kind = STEP_KINDS[key]
        if isinstance(body, yaml.ScalarNode) and kind.shorthand is not None:
            nodes = {kind.shorthand: body}
        elif isinstance(body, yaml.ScalarNode) and body.value == "" and not kind.required:
            nodes = {}
        else:
            nodes = reader.fields(body, f"step {index} ({key})", kind.required, kind.optional)
        step = kind.from_yaml(_StepFields(names, key, nodes))
        out.append(Located(index, step, reader.where(key_node)))
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
