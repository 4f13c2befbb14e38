"""The JSON Schema of scenario files: generated from the field definitions, published in
docs/ unchanged, accepting every shipped scenario, and agreeing with the loader on every
field's bounds and choices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sim.scenario.model import (
    CONVERSATION_FIELDS,
    PROFILE_FIELDS,
    SCENARIO_FIELDS,
    STEP_KINDS,
)
from sim.scenario.parse import ScenarioError, parse_scenario
from sim.scenario.schema import scenario_schema, schema_text
from sim.scenario.steps import Field
from tests.scenario.test_compact import COMPACT
from tests.scenario.test_steps import EVERY_KIND

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "scenario.schema.json"
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(scenario_schema())


def test_the_published_schema_is_the_generated_one() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == schema_text(), (
        "docs/scenario.schema.json is stale: run `turnsim schema -o docs/scenario.schema.json`"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(PUBLISHED.read_text()))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_scenario_is_valid(path: Path) -> None:
    VALIDATOR.validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_every_step_kind_and_the_compact_forms_are_valid() -> None:
    VALIDATOR.validate(yaml.safe_load(EVERY_KIND))
    VALIDATOR.validate(yaml.safe_load(COMPACT))
    assert set(scenario_schema()["$defs"]) >= set(STEP_KINDS) | {"repeat"}


def test_a_typo_is_caught_by_the_schema_as_by_the_loader() -> None:
    doc = yaml.safe_load(EVERY_KIND)
    doc["steps"][0]["send"]["wiat"] = True
    assert not VALIDATOR.is_valid(doc)
    doc = yaml.safe_load(EVERY_KIND)
    doc["steps"].append({"sned": {"conv": "c1"}})
    assert not VALIDATOR.is_valid(doc)


# -- the schema and the loader agree on each field ---------------------------------------

BASE = """\
name: probe
profiles:
  inventory: {runtime_key: inventory@v1}
conversations:
  c1: {profile: inventory}
steps:
  - send: {conv: c1, turn: t1, prompt: hi}
"""


def _doc() -> dict[str, Any]:
    return yaml.safe_load(BASE)


def _agree(doc: dict[str, Any]) -> tuple[bool, bool]:
    """(schema accepts, loader accepts) for one document."""
    try:
        parse_scenario(yaml.safe_dump(doc, sort_keys=False), "probe.yaml")
        loads = True
    except ScenarioError:
        loads = False
    return VALIDATOR.is_valid(doc), loads


def _values(field: Field) -> list[tuple[Any, bool]]:
    """Values of a field with whether they are valid."""
    if field.kind == "integer":
        return [
            (field.low, True),
            (field.high, True),
            (field.low - 1, False),
            (field.high + 1, False),
        ]
    if field.kind == "choice":
        return [(field.choices[0], True), ("not-a-choice", False)]
    if field.kind == "boolean":
        return [(True, True), ("yes please", False)]
    if field.kind == "delay":
        return [("random", True), (field.high, True), (field.high + 1, False), ("soon", False)]
    if field.kind == "phases":
        return [(["final"], True), (["later"], False)]
    if field.kind == "phase":
        return [("final", True), ("later", False)]
    if field.kind == "strings" and field.pattern is not None:
        return [(["slow"], True), (["two words"], False)]
    return []


def _step_cases() -> list[Any]:
    out = []
    for key, kind in STEP_KINDS.items():
        for field in kind.fields:
            for value, valid in _values(field):
                out.append(
                    pytest.param(key, field.name, value, valid, id=f"{key}.{field.name}={value}")
                )
    return out


def _minimal(key: str) -> dict[str, Any]:
    """The step with its required fields filled in."""
    fill = {
        "conv": "c1",
        "turn": "t1",
        "profile": "inventory",
        "ms": 1,
        "count": 1,
        "prompt": "x",
        "runtime_key": "inventory@v2",
        "kind": "switch_in_flight",
    }
    kind = STEP_KINDS[key]
    return {name: fill[name] for name in kind.required}


@pytest.mark.parametrize(("key", "name", "value", "valid"), _step_cases())
def test_step_fields_agree(key: str, name: str, value: Any, valid: bool) -> None:
    doc = _doc()
    body = _minimal(key)
    body[name] = value
    if key == "expect_failure" and name != "conv":
        body["conv"] = "c1"
    doc["steps"].append({key: body})
    assert _agree(doc) == (valid, valid)


@pytest.mark.parametrize(
    ("where", "field"),
    [("top", f) for f in SCENARIO_FIELDS]
    + [("profile", f) for f in PROFILE_FIELDS]
    + [("conversation", f) for f in CONVERSATION_FIELDS],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_other_fields_agree(where: str, field: Field) -> None:
    for value, valid in _values(field):
        doc = _doc()
        target = {
            "top": doc,
            "profile": doc["profiles"]["inventory"],
            "conversation": doc["conversations"]["c1"],
        }[where]
        target[field.name] = value
        assert _agree(doc) == (valid, valid), (field.name, value)
