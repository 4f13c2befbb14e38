"""The JSON Schema of scenario files, generated from the definitions the loader reads by.

Every field comes from a :class:`~sim.scenario.steps.Field`: the steps' own
(:data:`sim.scenario.model.STEP_KINDS`) and the scenario's, profiles', conversations',
``retry``'s and ``repeat``'s (:mod:`sim.scenario.model`). Editors use it to complete and
check a file as it is typed (``docs/scenario.schema.json``, written by ``turnsim schema``;
a test keeps the published copy equal to :func:`scenario_schema`). The schema is never
looser than the loader: a file it accepts loads, except for names (an unknown profile,
conversation or turn) that only the loader can check.
"""

from __future__ import annotations

import json
from typing import Any

from persisters.model import PHASES
from sim.scenario.model import (
    CONVERSATION_FIELDS,
    PROFILE_FIELDS,
    REPEAT,
    REPEAT_FIELDS,
    RETRY_FIELDS,
    SCENARIO_FIELDS,
    STEP_KINDS,
)
from sim.scenario.steps import Field, Step

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_NON_EMPTY = {"type": "string", "pattern": r"\S"}


def field_schema(field: Field) -> dict[str, Any]:
    """What one field may hold, with its meaning and default."""
    kind = field.kind
    out: dict[str, Any]
    if kind in ("string", "conv", "profile", "turn") or kind == "conv_or_all":
        out = dict(_NON_EMPTY)
    elif kind == "text":
        out = {"type": "string"}
    elif kind == "integer":
        out = {"type": "integer", "minimum": field.low, "maximum": field.high}
    elif kind == "boolean":
        out = {"type": "boolean"}
    elif kind == "choice":
        out = {"enum": list(field.choices)}
    elif kind == "phase":
        out = {"enum": list(PHASES)}
    elif kind == "phases":
        out = {"type": "array", "items": {"enum": list(PHASES)}}
    elif kind == "strings":
        out = {"type": "array", "items": dict(_NON_EMPTY)}
    elif kind == "reason":
        out = {"anyOf": [{"const": True}, dict(_NON_EMPTY)]}
    elif kind == "delay":
        out = {
            "anyOf": [
                {"const": "random"},
                {"type": "integer", "minimum": field.low, "maximum": field.high},
            ]
        }
    else:  # pragma: no cover - FIELD_KINDS is closed
        raise AssertionError(kind)
    if field.pattern is not None:
        target = out["items"] if kind == "strings" else out
        target["pattern"] = f"^(?:{field.pattern[0]})$"
    out["description"] = field.doc
    if field.default is not None:
        out["default"] = field.default
    return out


def _object(fields: tuple[Field, ...], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["properties"] = {f.name: field_schema(f) for f in fields}
    required = [f.name for f in fields if f.required]
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def _doc(kind: type[Step]) -> str:
    return " ".join((kind.__doc__ or "").split())


def step_schema(kind: type[Step]) -> dict[str, Any]:
    """One step: a mapping with the step's key, whose value holds its fields."""
    body: dict[str, Any] = _object(kind.fields)
    forms = [body]
    if kind.shorthand is not None:  # `sleep: 50`, `wait_idle: c1`
        forms.append(field_schema(kind.field(kind.shorthand)))
    if not kind.required:  # `make_readonly:` with nothing after it
        forms.append({"type": "null"})
    value = body if len(forms) == 1 else {"anyOf": forms}
    return {
        "type": "object",
        "description": _doc(kind),
        "properties": {kind.key: value},
        "required": [kind.key],
        "additionalProperties": False,
    }


def scenario_schema() -> dict[str, Any]:
    """The whole schema (JSON Schema draft 2020-12) as a JSON-ready value."""
    top = _object(
        SCENARIO_FIELDS,
        "A turnsim scenario: profiles, conversations and the steps that drive them "
        "(docs/scenarios.md).",
    )
    conversation = _object(CONVERSATION_FIELDS, "A conversation, or a template (count).")
    repeat_body = _object(REPEAT_FIELDS)
    repeat_body["properties"]["steps"] = {"$ref": "#/$defs/steps"}
    repeat_body["required"] = ["times", "steps"]
    defs: dict[str, Any] = {
        "profile": _object(PROFILE_FIELDS, "A profile: what it resolves to and how it runs."),
        "conversation": conversation,
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/step"},
            "description": "Steps, run in order; each a mapping with one key, the step kind.",
        },
        "step": {
            "oneOf": [{"$ref": f"#/$defs/{key}"} for key in (*STEP_KINDS, REPEAT)],
        },
    }
    for key, kind in STEP_KINDS.items():
        defs[key] = step_schema(kind)
    defs[REPEAT] = {
        "type": "object",
        "description": "Run these steps `times` times, in order; {i} in a turn name is the "
        "round's number (1..times).",
        "properties": {REPEAT: repeat_body},
        "required": [REPEAT],
        "additionalProperties": False,
    }
    properties = dict(top["properties"])
    properties["retry"] = _object(RETRY_FIELDS, "Retries of transient save failures.")
    properties["profiles"] = {
        "type": "object",
        "minProperties": 1,
        "description": "Profile slug -> profile.",
        "additionalProperties": {"$ref": "#/$defs/profile"},
    }
    properties["conversations"] = {
        "type": "object",
        "minProperties": 1,
        "description": "Conversation name -> conversation (or template).",
        "additionalProperties": {"$ref": "#/$defs/conversation"},
    }
    properties["steps"] = {"$ref": "#/$defs/steps"}
    return {
        "$schema": DRAFT,
        "title": "turnsim scenario",
        "description": top["description"],
        "type": "object",
        "properties": properties,
        "required": ["name", "profiles", "conversations", "steps"],
        "additionalProperties": False,
        "$defs": defs,
    }


def schema_text() -> str:
    """The schema as the published file holds it (indented JSON, one final newline)."""
    return json.dumps(scenario_schema(), indent=2, ensure_ascii=False) + "\n"
