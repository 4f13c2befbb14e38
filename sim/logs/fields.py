"""Reading one field of a parsed log event.

A log line is any JSON object, so a reader never trusts a field's type: these accessors
return the value when it has the expected type and a neutral one ('' / 0 / None) otherwise.
"""

from __future__ import annotations

from typing import Any

#: The levels in increasing order of concern (``--level`` keeps this one and above).
LEVEL_RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def text_of(value: Any) -> str:
    """``value`` if it is a string, else ``''``."""
    return value if isinstance(value, str) else ""


def int_of(value: Any) -> int:
    """``value`` if it is an int (not a bool), else ``0``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def time_of(event: dict[str, Any]) -> int | None:
    """The event's virtual time ``t_ms``, or ``None`` when it has none (or not an int)."""
    t = event.get("t_ms")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def seq_of(event: dict[str, Any]) -> int:
    """The event's ``seq`` (its position in its run), ``0`` when it has none."""
    return int_of(event.get("seq"))
