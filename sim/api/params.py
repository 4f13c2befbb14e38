"""Query parameters of the debug API, validated at the edge into frozen values.

What a caller may rely on: every refusal is a :class:`ParameterError` whose message names
the parameter (the app answers it with a 400); integers are plain decimal ASCII only (no
``int()`` leniency such as ``1_000``, ``+5`` or other scripts' digits); an empty value
means "not given". Nothing here knows HTTP: callers pass decoded ``(name, value)`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from persisters.model import PHASES, TurnQuery

DEFAULT_LIMIT = 100
LIMIT_MAX = 1000
INT64_MAX = 2**63 - 1
#: How much of a rejected value an error message quotes.
_QUOTE_MAX = 60

#: Inclusive bounds of the integer query parameters.
INT_RANGES: dict[str, tuple[int, int]] = {
    "limit": (1, LIMIT_MAX),
    "since_ms": (0, INT64_MAX),
    "as_of_ms": (0, INT64_MAX),
}


class ParameterError(ValueError):
    """A query parameter that cannot be used; the message names it."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(message)


def quoted(value: str) -> str:
    """``value`` as an error message shows it: ``repr``, cut to 60 characters plus ``...``."""
    shown = value if len(value) <= _QUOTE_MAX else value[:_QUOTE_MAX] + "..."
    return repr(shown)


def _expected(name: str) -> str:
    low, high = INT_RANGES[name]
    return f"{name} must be an integer from {low} to {high}"


def _parse_int(name: str, text: str) -> int:
    """A plain decimal ASCII integer (optional '-'); anything else is a ParameterError."""
    digits = text[1:] if text.startswith("-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ParameterError(name, f"{_expected(name)}, got {quoted(text)}")
    if len(digits.lstrip("0")) > 19:  # beyond int64 either way: no int() on huge input
        raise ParameterError(name, f"{_expected(name)}, got {quoted(text)}")
    return int(text)


def _in_range(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    low, high = INT_RANGES[attribute.name]
    if value is not None and not low <= value <= high:
        raise ParameterError(attribute.name, f"{_expected(attribute.name)}, got {value}")


def _check_phase(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and value not in PHASES:
        raise ParameterError(
            "phase", f"phase must be one of {', '.join(PHASES)}, got {quoted(value)}"
        )


def refuse_query(pairs: Sequence[tuple[str, str]]) -> None:
    """Endpoints without query parameters refuse any (a typo would otherwise go unnoticed)."""
    if pairs:
        name = pairs[0][0]
        raise ParameterError(
            name, f"unknown query parameter {quoted(name)}; this endpoint takes none"
        )


def as_of_query(pairs: Sequence[tuple[str, str]]) -> int | None:
    """The one query parameter of the per-conversation and per-turn endpoints:
    ``as_of_ms`` (the store as it was then), or None; anything else is refused."""
    value: int | None = None
    seen = False
    for name, text in pairs:
        if name != "as_of_ms":
            raise ParameterError(
                name, f"unknown query parameter {quoted(name)}; expected as_of_ms or none"
            )
        if seen:
            raise ParameterError(name, f"{name} given more than once")
        seen = True
        if text != "":
            value = _parse_int(name, text)
            low, high = INT_RANGES[name]
            if not low <= value <= high:
                raise ParameterError(name, f"{_expected(name)}, got {value}")
    return value


@attrs.frozen
class TurnsParams:
    """The validated query of ``GET /api/debug/turns``; ``None`` means "any".

    Validated however it is built (``from_query`` or the constructor).
    """

    conv_id: str | None = None
    session_id: str | None = None
    phase: str | None = attrs.field(default=None, validator=_check_phase)
    runtime_key: str | None = None
    inference_id: str | None = None
    since_ms: int | None = attrs.field(default=None, validator=_in_range)
    limit: int = attrs.field(default=DEFAULT_LIMIT, validator=_in_range)
    as_of_ms: int | None = attrs.field(default=None, validator=_in_range)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The parameter names, in the order the OpenAPI document lists them."""
        return tuple(f.name for f in attrs.fields(cls))

    @classmethod
    def from_query(cls, pairs: Sequence[tuple[str, str]]) -> TurnsParams:
        """Build from decoded query pairs.

        Unknown or repeated parameters are refused; an empty value means "not given".
        """
        names = cls.names()
        given: dict[str, str] = {}
        for name, value in pairs:
            if name not in names:
                raise ParameterError(
                    name,
                    f"unknown query parameter {quoted(name)}; expected one of {', '.join(names)}",
                )
            if name in given:
                raise ParameterError(name, f"{name} given more than once")
            given[name] = value
        values: dict[str, Any] = {k: v for k, v in given.items() if v != ""}
        for name in INT_RANGES:
            if name in values:
                values[name] = _parse_int(name, values[name])
        return cls(**values)

    def to_query(self) -> TurnQuery:
        """The store query these parameters ask for."""
        return TurnQuery(
            conv_id=self.conv_id,
            session_id=self.session_id,
            phase=self.phase,
            runtime_key=self.runtime_key,
            inference_id=self.inference_id,
            since_ms=self.since_ms,
            as_of_ms=self.as_of_ms,
            limit=self.limit,
        )
