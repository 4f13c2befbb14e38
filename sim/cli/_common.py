"""What every ``turnsim`` command shares: options, the one exit helper, the one JSON printer.

Exit codes, everywhere: 0 all good, 1 a scenario (or check) failed, 2 bad input or a
database that cannot be used. A refusal is one line on stderr (``turnsim[ CMD]: ...``),
never a traceback; with ``--json`` the same line also goes to stdout as ``{"error": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any, NoReturn

import click

from persisters.model import dumps
from sim.logs.setup import LEVELS, configure_logging
from sim.printable import printable

BACKENDS = ("asyncio", "trio")


def fail(message: str, *, command: str = "", as_json: bool = False, code: int = 2) -> NoReturn:
    """Refuse: one line on stderr (and ``{"error": ...}`` on stdout with ``--json``), exit 2.

    Control and bidi characters in ``message`` are escaped (:func:`sim.printable.printable`);
    a message of several lines (a scenario file's problems) prints each with the prefix.

    ``command`` names the subcommand in the prefix (``turnsim db migrate: error: ...``);
    without it the prefix is ``turnsim: ...``. Whitespace runs fold to one space only where
    a command names itself, as ``db`` always did.
    """
    message = printable(message, keep_newlines=not command)  # a name from a file stays inert
    if command:
        line = " ".join(message.split())
        if as_json:
            click.echo(json.dumps({"error": line}))
        click.echo(f"turnsim {command}: error: {line}", err=True)
    else:
        for line in message.split("\n"):  # several problems: one prefixed line each
            click.echo(f"turnsim: {line}", err=True)
    sys.exit(code)  # SystemExit: no `except Exception` on the way can swallow a refusal


def emit_json(value: Any, *, pretty: bool = False) -> None:
    """Print one JSON document on stdout: compact and key-sorted (the project's one encoder),
    or indented in the value's own key order with ``pretty`` (the ``db`` reports)."""
    if pretty:
        click.echo(json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False))
    else:
        sys.stdout.write(dumps(value) + "\n")


@contextlib.contextmanager
def logging_to(log_file: str | None, log_format: str | None, level: str) -> Iterator[None]:
    """Route the run's structlog events: JSON to a file by default, else console on stderr."""
    stream: IO[str] | None = None
    try:
        if log_file:
            stream = sys.stdout if log_file == "-" else open(log_file, "w", encoding="utf-8")  # noqa: SIM115
            configure_logging(fmt=log_format or "json", stream=stream, level=level)
        elif log_format:
            configure_logging(fmt=log_format, level=level)
        else:
            configure_logging(fmt="console", level="error")
        yield
    finally:
        configure_logging(fmt="console", level="error")  # never leave structlog on a closed file
        if stream is not None and stream is not sys.stdout:
            stream.close()


def log_options(fn: Any) -> Any:
    """``--log-file``, ``--log-format``, ``--log-level``, as ``run`` takes them."""
    fn = click.option(
        "--log-level",
        type=click.Choice(LEVELS),
        default="info",
        show_default=True,
        help="Lowest level written to the log.",
    )(fn)
    fn = click.option(
        "--log-format",
        type=click.Choice(["json", "console"]),
        default=None,
        help="json (default for --log-file) or console (readable).",
    )(fn)
    fn = click.option(
        "--log-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write the structured log here ('-' for stdout).",
    )(fn)
    return fn


def store_option(default: str) -> Any:
    """``--store SPEC``: which store runs the scenarios (see :mod:`persisters.stores`)."""
    from persisters.stores import KINDS

    kinds = "; ".join(f"{k}: {v}" for k, v in KINDS.items())
    return click.option(
        "--store",
        "store_spec",
        default=default,
        show_default=True,
        metavar="SPEC",
        help=f"The store to run on ({kinds}).",
    )


def parse_store(text: str) -> Any:
    """The :class:`persisters.stores.StoreSpec` ``text`` names (a factory is imported
    now); bad input exits 2."""
    from persisters.stores import StoreSpec, StoreSpecError

    try:
        spec = StoreSpec.parse(text)
        if spec.kind in ("factory", "entry-point"):
            spec.factory()  # import it now: a mistake is refused before any run starts
        return spec
    except StoreSpecError as exc:
        fail(str(exc))


def load_scenarios(paths: tuple[str, ...]) -> list[Any]:
    """Every scenario file under ``paths``, parsed; bad input exits 2 with every problem of
    the file, one ``turnsim: file:line:col: ...`` line each."""
    from sim.scenario.parse import ScenarioError, discover, load_scenario

    try:
        files = discover(list(paths))
        if not files:
            fail(f"no scenario files (*.yaml) under {', '.join(paths)}")
        return [load_scenario(f) for f in files]
    except ScenarioError as exc:
        fail("\n".join(e.line_text for e in exc.errors))
