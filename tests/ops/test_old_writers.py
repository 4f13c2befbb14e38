"""The old writers' metadata shapes project to what they claim, and every era uses real ones."""

from __future__ import annotations

import pytest

from persisters.model import extract_inference_id, extract_runtime_key
from sim.ops.old_writers import (
    ERA_WEIGHTS,
    ERAS,
    ERAS_RECORDING_SWITCHES,
    INFERENCE_SHAPES,
    RUNTIME_SHAPES,
)

RUNTIME = "planner@v1"
STALE_RUNTIME = "support@v2"
INFERENCE = "0d4c6a2e-8f1b-4c3a-9e7d-5b2a1c0f9e8d"
STALE_INFERENCE = "6f5e4d3c-2b1a-4f0e-8d9c-7b6a5f4e3d2c"


@pytest.mark.parametrize("name", sorted(RUNTIME_SHAPES))
def test_each_runtime_shape_projects_to_its_expected_value(name: str) -> None:
    fragment, expected = RUNTIME_SHAPES[name](RUNTIME, STALE_RUNTIME)
    assert expected in (RUNTIME, "")
    assert extract_runtime_key(fragment) == expected


@pytest.mark.parametrize("name", sorted(INFERENCE_SHAPES))
def test_each_inference_shape_projects_to_its_expected_value(name: str) -> None:
    fragment, expected = INFERENCE_SHAPES[name](INFERENCE, STALE_INFERENCE)
    assert expected != STALE_INFERENCE
    assert extract_inference_id(fragment) == expected


def test_every_era_uses_known_shapes_and_every_shape_is_used() -> None:
    used_runtime = {s for runtime, _ in ERAS.values() for s in runtime}
    used_inference = {s for _, inference in ERAS.values() for s in inference}
    assert used_runtime == set(RUNTIME_SHAPES)
    assert used_inference == set(INFERENCE_SHAPES)
    assert len(ERA_WEIGHTS) == len(ERAS) and set(ERAS) >= ERAS_RECORDING_SWITCHES
