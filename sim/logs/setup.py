"""The project's one structlog configuration.

JSON lines (the default for files) go through the project's one JSON encoder, which sorts
keys, so the same run gives the same bytes.
Simulation events carry no wall-clock field.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog

from persisters.model import dumps
from sim.printable import printable

LEVELS = ("debug", "info", "warning", "error")


def render_json(_logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
    """Render one event as a JSON line (keys sorted by the one encoder: a stable order)."""
    return dumps(event_dict)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list | tuple):
        return type(value)(_escaped(v) for v in value)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    return value


def escape_for_console(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Every string of the event, keys included, through :func:`sim.printable.printable`:
    a request path or a scenario name cannot drive the terminal (console format only;
    the JSON lines stay exact)."""
    return {_escaped(k): _escaped(v) for k, v in event_dict.items()}


def configure_logging(
    *, fmt: str = "json", stream: IO[str] | None = None, level: str = "info"
) -> None:
    """Configure structlog once for the process.

    ``fmt`` is ``json`` or ``console``; ``stream`` defaults to stderr; events below
    ``level`` cost almost nothing (filtering bound logger).
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be 'json' or 'console', got {fmt!r}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    out = stream if stream is not None else sys.stderr
    processors: list[Any] = [structlog.processors.add_log_level]
    if fmt == "json":
        processors.append(render_json)
    else:
        processors.append(escape_for_console)
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty(), sort_keys=True))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def configure_quiet() -> None:
    """Only warnings and errors, as console lines on stderr (the CLI default)."""
    configure_logging(fmt="console", level="warning")
