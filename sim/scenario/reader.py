"""Reading YAML nodes with positions: the typed reads every part of the loader uses.

Every value keeps the line and column it came from, so a bad value fails with
``file:line:column: what is wrong; expected what``. Positions are what an editor shows:
a line ends at ``\\n`` (so ``\\r\\n`` too); a lone ``\\r``, NEL (U+0085) and the Unicode
line and paragraph separators are characters within a line, although YAML counts them as
line breaks; columns count characters from 1; a byte order mark takes no column.
:class:`Reader` collects the problems of a file (:meth:`Reader.collecting`) so that one
load reports all of them (at most :data:`MAX_ERRORS`).
"""

from __future__ import annotations

import bisect
import contextlib
import re
from collections.abc import Iterator
from typing import Any

import yaml

from persisters.model import PHASES
from sim.scenario.model import Where
from sim.scenario.steps import MAX_INT, Field

try:  # the C loader is ~20x faster on large files
    from yaml import CSafeLoader as _Loader

    #: libyaml reports a refused character's position in bytes of the UTF-8 text
    _READER_POSITION_IN_BYTES = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

    _READER_POSITION_IN_BYTES = False

MAX_FILE_BYTES = 8 * 1024 * 1024
#: The most prompt text (UTF-8 bytes) one scenario may hold, after aliases and ``repeat``.
MAX_PROMPT_BYTES = 1024 * 1024
MAX_DEPTH = 32
#: Problems one load reports at most (the first ones, in file order of discovery).
MAX_ERRORS = 50
BOM = "\ufeff"

__all__ = ["MAX_INT", "ScenarioError"]


class ScenarioError(ValueError):
    """A scenario file is malformed.

    ``path``, ``line``, ``column`` and ``message`` are those of the first problem found;
    ``errors`` holds every problem of the file (the first included), each one line
    ``file:line:col: message``; ``str()`` is those lines joined by newlines.
    """

    def __init__(
        self,
        path: str,
        line: int,
        column: int,
        message: str,
        *,
        errors: tuple[ScenarioError, ...] = (),
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.errors: tuple[ScenarioError, ...] = errors or (self,)
        super().__init__("\n".join(e.line_text for e in self.errors))

    @property
    def line_text(self) -> str:
        """This one problem as ``file:line:col: message``."""
        return f"{self.path}:{self.line}:{self.column}: {self.message}"

    @classmethod
    def all_of(cls, errors: list[ScenarioError]) -> ScenarioError:
        """One error that reports each of ``errors`` (the first gives its position)."""
        first = errors[0]
        return cls(first.path, first.line, first.column, first.message, errors=tuple(errors))


class TooManyErrors(Exception):
    """Raised by :meth:`Reader.record` once :data:`MAX_ERRORS` problems are known."""


class Lines:
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


class Reader:
    """Typed reads of YAML nodes; each bad value raises :class:`ScenarioError` at it."""

    def __init__(self, path: str, lines: Lines) -> None:
        self.path = path
        self.lines = lines
        self._constructor = yaml.constructor.SafeConstructor()
        self.problems: list[ScenarioError] = []
        self._seen: set[tuple[int, int, str]] = set()

    def record(self, exc: ScenarioError) -> None:
        """Keep a problem (once: a repeated or fanned-out step finds the same one again)."""
        for e in exc.errors:
            key = (e.line, e.column, e.message)
            if key not in self._seen:
                self._seen.add(key)
                self.problems.append(e)
        if len(self.problems) >= MAX_ERRORS:
            raise TooManyErrors

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Run a block; a :class:`ScenarioError` in it is recorded and the load goes on."""
        try:
            yield
        except ScenarioError as exc:
            self.record(exc)

    def error(self, node: yaml.Node | None, message: str) -> ScenarioError:
        message = " ".join(message.split()) if "\n" in message else message  # one line
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
            detail = getattr(exc, "problem", None) or str(exc)
            raise self.error(
                node, f"{what}: unreadable value ({' '.join(detail.split())})"
            ) from None

    def string(self, node: yaml.Node, what: str, *, allow_empty: bool = False) -> str:
        value = self.scalar(node, what)
        if isinstance(value, bool) or value is None or isinstance(value, int | float):
            if value is None or isinstance(value, bool | float):
                raise self.error(node, f"{what} must be a string, got {type_name(value)}")
            value = str(value)
        if not isinstance(value, str):
            raise self.error(node, f"{what} must be a string, got {type_name(value)}")
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
            raise self.error(node, f"{what} must be an integer, got {type_name(value)}")
        if not low <= value <= high:
            raise self.error(node, f"{what} must be between {low} and {high}, got {value}")
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, what)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false, got {type_name(value)}")
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
                raise self.error(key_node, f"keys in {what} must be strings, got {type_name(key)}")
            if key in out:
                raise self.error(key_node, f"duplicate key {key!r} in {what}")
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list, got {_node_kind(node)}")
        return list(node.value)

    def fields(
        self,
        node: yaml.Node,
        what: str,
        required: tuple[str, ...],
        optional: tuple[str, ...],
        *,
        collect: bool = False,
    ) -> dict[str, yaml.Node]:
        """The mapping's fields by name; an unknown or missing field is an error (with
        ``collect``, each is recorded and the known fields are returned)."""
        items = self.mapping(node, what)
        for key, (key_node, _) in items.items():
            if key not in required and key not in optional:
                allowed = ", ".join((*required, *optional))
                with self.collecting() if collect else contextlib.nullcontext():
                    raise self.error(
                        key_node, f"unknown field {key!r} in {what}; expected one of {allowed}"
                    )
        for key in required:
            if key not in items:
                with self.collecting() if collect else contextlib.nullcontext():
                    raise self.error(node, f"{what} is missing required field {key!r}")
        return {
            k: v for k, (_, v) in items.items() if not collect or k in required or k in optional
        }

    def _matching(self, node: yaml.Node, what: str, field: Field) -> str:
        value = self.string(node, what)
        if field.pattern is not None and not re.fullmatch(field.pattern[0], value):
            raise self.error(node, f"{what} {value!r} is not {field.pattern[1]}")
        return value

    def field(self, node: yaml.Node, what: str, field: Field) -> Any:
        """A value checked against its :class:`~sim.scenario.steps.Field` (the kinds that
        need no names defined elsewhere: not ``conv``, ``profile`` or ``turn``)."""
        kind = field.kind
        if kind == "string":
            return self._matching(node, what, field)
        if kind == "text":
            return self.string(node, what, allow_empty=True)
        if kind == "integer":
            return self.integer(node, what, low=field.low, high=field.high)
        if kind == "boolean":
            return self.boolean(node, what)
        if kind == "choice":
            return self.choice(node, what, field.choices)
        if kind == "phase":
            return self.choice(node, what, PHASES)
        if kind == "phases":
            return tuple(self.choice(n, f"{what} item", PHASES) for n in self.sequence(node, what))
        if kind == "strings":
            items = self.sequence(node, what)
            return tuple(self._matching(n, f"{what} item", field) for n in items)
        if kind == "reason":
            value = self.scalar(node, what)
            if value is True:
                return "expected to fail"
            if isinstance(value, str) and value.strip():
                return value
            raise self.error(
                node, f"{what} must be true or a reason (a string), got {type_name(value)}"
            )
        if kind == "delay":
            value = self.scalar(node, what)
            if value == "random":
                return "random"
            if isinstance(value, int) and not isinstance(value, bool):
                return self.integer(node, what, low=field.low, high=field.high)
            raise self.error(
                node,
                f"{what} must be 'random' or a delay in virtual milliseconds, "
                f"got {type_name(value)}",
            )
        raise AssertionError(f"{kind} fields are read with the names they refer to")


def type_name(value: Any) -> str:
    """How a message names a value's type (\"a string\", \"nothing (null)\")."""
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


#: The YAML types a scenario may hold (plain values, lists, mappings); any other tag is
#: refused where it stands, in one line.
_YAML = "tag:yaml.org,2002:"
PLAIN_TAGS = frozenset(
    f"{_YAML}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)


def tag_problem(node: yaml.Node) -> str | None:
    """Why ``node``'s tag has no place in a scenario, or None when it is a plain type."""
    if node.tag in PLAIN_TAGS:
        return None
    if node.tag == f"{_YAML}merge":
        return (
            "YAML merge keys (<<) are not supported in scenario files; write the fields out "
            "(anchors and aliases of whole values work)"
        )
    shown = node.tag.replace(_YAML, "!!") if node.tag.startswith(_YAML) else node.tag
    return f"unknown YAML tag {shown!r}; scenario files hold plain values (no tags)"


def check_depth(reader: Reader, node: yaml.Node) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and any tag that is not a plain type."""
    stack = [(node, 0)]
    deepest: dict[int, int] = {}  # aliases share nodes: visit each again only deeper
    while stack:
        current, depth = stack.pop()
        if deepest.get(id(current), -1) >= depth:
            continue
        deepest[id(current)] = depth
        problem = tag_problem(current)
        if problem is not None:
            raise reader.error(current, problem)
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


def compose(text: str, path: str, lines: Lines) -> yaml.Node | None:
    """The YAML node tree of ``text`` (a byte order mark already removed), or None for an
    empty document; any YAML problem is one :class:`ScenarioError` at its position."""
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ScenarioError(
            path, line, 1, "contains a NUL byte (binary file?); scenario files are YAML text"
        )
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = lines.position(mark.index) if mark else (1, 1)
        problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
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
        raise ScenarioError(path, 1, 1, f"invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ScenarioError(path, 1, 1, "nesting too deep to be a scenario") from None
