"""Writing a scenario back as YAML text that :func:`sim.scenario.parse.parse_scenario`
reads back equal (the shrinker writes its results this way).

Every mapping is written in flow style (``{key: value, ...}``), one per line, fields in
the order the docs show them and defaults left out; a string stays plain where YAML would
read it back unchanged and is double-quoted (JSON escapes) otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sim.runtime.profiles import Profile
from sim.scenario.model import PROFILE_FIELDS, Scenario

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.@/-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
# Characters a YAML reader would refuse, fold or take for a line break inside quotes.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _flow(fields: Sequence[tuple[str, Any]]) -> str:
    parts = []
    for key, value in fields:
        if isinstance(value, tuple | list):
            parts.append(f"{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            parts.append(f"{key}: {_scalar(value)}")
    return "{" + ", ".join(parts) + "}"


def _profile_fields(p: Profile) -> list[tuple[str, Any]]:
    f: list[tuple[str, Any]] = [("runtime_key", p.runtime_key)]
    defaults = Profile(slug=p.slug, runtime_key=p.runtime_key)
    for key in (f.name for f in PROFILE_FIELDS if not f.required):
        value = getattr(p, key)
        if value != getattr(defaults, key):
            f.append((key, value))
    return f


def render_scenario(scenario: Scenario, *, header: Sequence[str] = ()) -> str:
    """The scenario as YAML that :func:`sim.scenario.parse.parse_scenario` reads back equal;
    each ``header`` line becomes a comment at the top."""
    lines = [f"# {h}" for h in header]
    lines.append(f"name: {_scalar(scenario.name)}")
    if scenario.description:
        lines.append(f"description: {_scalar(scenario.description)}")
    lines.append(f"seed: {scenario.seed}")
    if scenario.store_latency_ms:
        lines.append(f"store_latency_ms: {scenario.store_latency_ms}")
    if scenario.markers:
        lines.append(f"markers: [{', '.join(_scalar(m) for m in scenario.markers)}]")
    if scenario.xfail is not None:
        lines.append(f"xfail: {_scalar(scenario.xfail)}")
    if (scenario.retry_attempts, scenario.retry_backoff_ms) != (3, 10):
        retry = [("attempts", scenario.retry_attempts), ("backoff_ms", scenario.retry_backoff_ms)]
        lines.append(f"retry: {_flow(retry)}")
    lines.append("profiles:")
    for p in scenario.profiles:
        lines.append(f"  {_scalar(p.slug)}: {_flow(_profile_fields(p))}")
    lines.append("conversations:")
    for c in scenario.conversations:
        fields: list[tuple[str, Any]] = [("profile", c.profile)]
        if c.session is not None:
            fields.append(("session", c.session))
        if c.session_from != "conversation":
            fields.append(("session_from", c.session_from))
        if c.history:
            fields.append(("history", True))
        if c.durability != "sync":
            fields.append(("durability", c.durability))
        lines.append(f"  {_scalar(c.name)}: {_flow(fields)}")
    lines.append("steps:")
    for located in scenario.steps:
        fields = located.step.to_yaml()
        body = _flow(fields) if fields else "{}"
        lines.append(f"  - {located.kind}: {body}")
    return "\n".join(lines) + "\n"
