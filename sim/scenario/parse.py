"""Scenario files: YAML, one scenario per file, validated at the edge into frozen values.

A bad file fails before anything runs with every problem found, one line each:
``file:line:column: what is wrong; expected what`` (at most
:data:`sim.scenario.reader.MAX_ERRORS`; :class:`ScenarioError` holds them). Positions are
what an editor shows (:mod:`sim.scenario.reader`). Steps are read by
:mod:`sim.scenario.parse_steps` (each by its class, with ``repeat`` blocks and templates
expanded); the fields of everything else are defined in :mod:`sim.scenario.model`. The
complete reference is ``docs/scenarios.md``; ``docs/scenario.schema.json`` says the same
for editors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sim.runtime.profiles import Profile
from sim.scenario.model import (
    CONVERSATION_FIELDS,
    PROFILE_FIELDS,
    RETRY_FIELDS,
    SCENARIO_FIELDS,
    ConversationSpec,
    Located,
    Scenario,
)
from sim.scenario.parse_steps import Names, StepsReader
from sim.scenario.reader import (
    BOM,
    MAX_FILE_BYTES,
    MAX_INT,
    MAX_PROMPT_BYTES,
    Lines,
    Reader,
    ScenarioError,
    TooManyErrors,
    check_depth,
    compose,
)

__all__ = ["MAX_INT", "ScenarioError", "discover", "load_scenario", "parse_scenario"]

TOP_REQUIRED = ("name", "profiles", "conversations", "steps")
TOP_OPTIONAL = ("description", "seed", "store_latency_ms", "retry", "markers", "xfail")


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
    """Validate scenario YAML text (``path`` is used in messages); raise
    :class:`ScenarioError` with every problem found."""
    # YAML skips a leading byte order mark (libyaml without counting it): so do positions
    text = text.removeprefix(BOM)
    lines = Lines(text)
    reader = Reader(path, lines)
    node = compose(text, path, lines)
    if node is None:
        raise ScenarioError(
            path, 1, 1, f"empty file; expected a scenario mapping with {', '.join(TOP_REQUIRED)}"
        )
    check_depth(reader, node)
    try:
        scenario = _scenario(reader, node, path)
    except TooManyErrors:
        scenario = None
    except ScenarioError as exc:  # the file's structure itself: nothing more to read
        reader.record(exc)
        scenario = None
    if reader.problems or scenario is None:
        raise ScenarioError.all_of(reader.problems)
    return scenario


def refuse_large_prompts(steps: Sequence[Located]) -> None:
    """Refuse a scenario whose prompts, counted after YAML aliases and ``repeat`` are
    expanded, come to more than :data:`MAX_PROMPT_BYTES` of UTF-8: what one scenario makes
    the store write is bounded (a small file repeating one long prompt through aliases
    could otherwise fill a database hundreds of times its size)."""
    total = 0
    for located in steps:
        prompt = getattr(located.step, "prompt", None)
        if isinstance(prompt, str):
            total += len(prompt.encode("utf-8", "surrogatepass"))
        if total > MAX_PROMPT_BYTES:
            w = located.where
            raise ScenarioError(
                w.path,
                w.line,
                w.column,
                f"the prompts come to more than {MAX_PROMPT_BYTES} bytes (1 MiB) by step "
                f"{located.index}, counted after aliases and repeat are expanded; a scenario's "
                "prompts are at most 1 MiB in all: shorten or repeat fewer of them",
            )


def _scenario(reader: Reader, node: yaml.Node, path: str) -> Scenario | None:
    top = reader.fields(node, "the scenario", TOP_REQUIRED, TOP_OPTIONAL, collect=True)
    values: dict[str, Any] = {}
    for field in SCENARIO_FIELDS:
        if field.name in top:
            with reader.collecting():
                values[field.name] = reader.field(top[field.name], field.name, field)
    profiles: tuple[Profile, ...] = ()
    slugs: set[str] | None = None
    if "profiles" in top:
        with reader.collecting():
            profiles, slugs = _profiles(reader, top["profiles"])
    conversations: tuple[ConversationSpec, ...] = ()
    convs: set[str] | None = None
    templates: dict[str, tuple[str, ...]] = {}
    if "conversations" in top:
        with reader.collecting():
            conversations, convs, templates = _conversations(reader, top["conversations"], slugs)
    retry = {f.name: f.default for f in RETRY_FIELDS}
    if "retry" in top:
        with reader.collecting():
            items = reader.fields(top["retry"], "retry", (), tuple(retry))
            for field in RETRY_FIELDS:
                if field.name in items:
                    with reader.collecting():
                        retry[field.name] = reader.field(
                            items[field.name], f"retry.{field.name}", field
                        )
    steps = ()
    if "steps" in top:
        with reader.collecting():
            names = Names(reader, convs, slugs, templates)
            steps = StepsReader(reader, names).read(top["steps"])
        with reader.collecting():
            refuse_large_prompts(steps)
    if reader.problems:
        return None
    return Scenario(
        name=values["name"],
        path=path,
        seed=values.get("seed", 0),
        profiles=profiles,
        conversations=conversations,
        steps=steps,
        description=values.get("description", ""),
        store_latency_ms=values.get("store_latency_ms", 0),
        retry_attempts=retry["attempts"],
        retry_backoff_ms=retry["backoff_ms"],
        markers=values.get("markers", ()),
        xfail=values.get("xfail"),
    )


def _profiles(reader: Reader, node: yaml.Node) -> tuple[tuple[Profile, ...], set[str]]:
    """The profiles, and every slug the file defines (a broken profile's too, so that
    naming it is not a second error)."""
    out = []
    items = reader.mapping(node, "profiles")
    if not items:
        raise reader.error(
            node, "profiles is empty; define at least one profile with a runtime_key"
        )
    required = tuple(f.name for f in PROFILE_FIELDS if f.required)
    optional = tuple(f.name for f in PROFILE_FIELDS if not f.required)
    for slug, (_, value) in items.items():
        what = f"profile {slug!r}"
        with reader.collecting():
            f = reader.fields(value, what, required, optional)
            kwargs: dict[str, Any] = {}
            for field in PROFILE_FIELDS:
                if field.name in f:
                    kwargs[field.name] = reader.field(f[field.name], f"{what}: {field.name}", field)
            runtime = kwargs.pop("runtime_key")
            out.append(Profile(slug=slug, runtime_key=runtime.strip(), **kwargs))
    return tuple(out), set(items)


def _conversations(
    reader: Reader, node: yaml.Node, slugs: set[str] | None
) -> tuple[tuple[ConversationSpec, ...], set[str], dict[str, tuple[str, ...]]]:
    """The conversations (templates expanded), every name a step may use, and each
    template's conversations."""
    out: list[ConversationSpec] = []
    items = reader.mapping(node, "conversations")
    if not items:
        raise reader.error(node, "conversations is empty; define at least one")
    names = set(items)
    templates: dict[str, tuple[str, ...]] = {}
    required = tuple(f.name for f in CONVERSATION_FIELDS if f.required)
    optional = tuple(f.name for f in CONVERSATION_FIELDS if not f.required)
    session_field = CONVERSATION_FIELDS[1]
    count_field = CONVERSATION_FIELDS[2]
    source_field = CONVERSATION_FIELDS[3]
    taken: dict[str, str] = {}  # a template's conversation name -> the template
    for name, (key_node, value) in items.items():
        what = f"conversation {name!r}"
        with reader.collecting():
            f = reader.fields(value, what, required, optional)
            profile = reader.string(f["profile"], f"{what}: profile")
            if slugs is not None and profile not in slugs:
                raise reader.error(
                    f["profile"],
                    f"{what}: unknown profile {profile!r}; expected one of "
                    f"{', '.join(sorted(slugs))}",
                )
            session = (
                reader.field(f["session"], f"{what}: session", session_field)
                if "session" in f
                else None
            )
            source = (
                reader.field(f["session_from"], f"{what}: session_from", source_field)
                if "session_from" in f
                else "conversation"
            )
            extra: dict[str, Any] = {
                field.name: reader.field(f[field.name], f"{what}: {field.name}", field)
                for field in CONVERSATION_FIELDS[4:]
                if field.name in f
            }
            if "count" not in f:
                if session is not None and "{i}" in session:
                    raise reader.error(f["session"], f"{what}: {{i}} belongs in a template (count)")
                out.append(
                    ConversationSpec(
                        name=name, profile=profile, session=session, session_from=source, **extra
                    )
                )
                continue
            count = reader.field(f["count"], f"{what}: count", count_field)
            members = tuple(f"{name}{i}" for i in range(1, count + 1))
            for member in members:
                if member in items or member in taken:
                    other = f"template {taken[member]!r}" if member in taken else "this file"
                    raise reader.error(
                        key_node,
                        f"{what}: template makes conversation {member!r}, which {other} "
                        "already defines; rename one of them",
                    )
                taken[member] = name
            templates[name] = members
            names.update(members)
            for i, member in enumerate(members, start=1):
                shown = session.replace("{i}", str(i)) if session is not None else None
                out.append(
                    ConversationSpec(
                        name=member,
                        profile=profile,
                        session=shown,
                        session_from=source,
                        **extra,
                    )
                )
    return tuple(out), names, templates


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
