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

LEVELS = ("debug", "info", "warning", "error")


def render_json(_logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
    """Render one event as a JSON line (keys sorted by the one encoder: a stable order)."""
    return dumps(event_dict)


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
    renderer: Any
    if fmt == "json":
        renderer = render_json
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty(), sort_keys=True)
    structlog.configure(
        processors=[structlog.processors.add_log_level, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def configure_quiet() -> None:
    """Only warnings and errors, as console lines on stderr (the CLI default)."""
    configure_logging(fmt="console", level="warning")
