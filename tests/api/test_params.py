"""Query parameters (``sim.api.params``) without HTTP: decoded pairs in, a frozen value or a
:class:`ParameterError` naming the parameter out. ``test_app.py`` checks the 400s they become."""

from __future__ import annotations

from typing import Any

import pytest

from persisters.model import FINAL, TurnQuery
from sim.api.params import DEFAULT_LIMIT, ParameterError, TurnsParams, quoted, refuse_query


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"since_ms": -1}, "since_ms"),
        ({"since_ms": 2**63}, "since_ms"),
        ({"phase": "done"}, "phase"),
    ],
)
def test_turns_params_validate_however_built(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ParameterError) as caught:
        TurnsParams(**kwargs)
    assert caught.value.parameter == parameter
    assert str(caught.value).startswith(parameter)


def test_from_query_decodes_every_parameter_into_the_store_query() -> None:
    pairs = [
        ("conv_id", "c1"),
        ("session_id", "s1"),
        ("phase", FINAL),
        ("runtime_key", "inventory@v1"),
        ("inference_id", "i1"),
        ("since_ms", "007"),
        ("limit", "1000"),
    ]
    params = TurnsParams.from_query(pairs)
    assert params == TurnsParams("c1", "s1", FINAL, "inventory@v1", "i1", 7, 1000)
    assert params.to_query() == TurnQuery(
        conv_id="c1",
        session_id="s1",
        phase=FINAL,
        runtime_key="inventory@v1",
        inference_id="i1",
        since_ms=7,
        limit=1000,
    )


def test_an_empty_value_means_not_given() -> None:
    params = TurnsParams.from_query([(name, "") for name in TurnsParams.names()])
    assert params == TurnsParams()
    assert params.limit == DEFAULT_LIMIT


@pytest.mark.parametrize(
    ("pairs", "parameter", "fragment"),
    [
        ([("colour", "red")], "colour", "unknown query parameter 'colour'; expected one of"),
        ([("limit", "1"), ("limit", "2")], "limit", "limit given more than once"),
        ([("limit", "1_000")], "limit", "limit must be an integer from 1 to 1000"),
        ([("limit", "+5")], "limit", "got '+5'"),
        ([("since_ms", "\u0661")], "since_ms", "since_ms must be an integer from 0 to"),
        ([("since_ms", "9" * 30)], "since_ms", "since_ms must be an integer"),
        ([("phase", "FINAL")], "phase", "phase must be one of"),
    ],
)
def test_from_query_refuses_naming_the_parameter(
    pairs: list[tuple[str, str]], parameter: str, fragment: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        TurnsParams.from_query(pairs)
    assert caught.value.parameter == parameter
    assert fragment in str(caught.value)


def test_endpoints_without_parameters_refuse_any() -> None:
    refuse_query([])
    with pytest.raises(ParameterError) as caught:
        refuse_query([("v", "2"), ("w", "3")])
    assert caught.value.parameter == "v"
    assert str(caught.value) == "unknown query parameter 'v'; this endpoint takes none"


def test_a_long_value_is_quoted_cut_short() -> None:
    assert quoted("x" * 60) == repr("x" * 60)
    assert quoted("x" * 61) == repr("x" * 60 + "...")
