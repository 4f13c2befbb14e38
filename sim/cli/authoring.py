"""``turnsim new NAME`` and ``turnsim schema``: starting a scenario file and checking it in
an editor (thin layers over :mod:`sim.scenario.template` and :mod:`sim.scenario.schema`).

Exit codes as everywhere: 0 done, 2 bad input (a bad name, a file that exists).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from sim.cli._common import emit_json, fail

#: Where the published schema sits in a checkout, relative to its root.
PUBLISHED_SCHEMA = Path("docs") / "scenario.schema.json"


def _published_schema(start: Path) -> Path | None:
    """The checkout's ``docs/scenario.schema.json`` above ``start``, if any."""
    for folder in (start, *start.parents):
        candidate = folder / PUBLISHED_SCHEMA
        if candidate.is_file():
            return candidate
    return None


@click.command("new", epilog="Docs: docs/authoring.md.")
@click.argument("name")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("scenarios"),
    show_default=True,
    help="Folder to write NAME.yaml into (created if missing).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print {path, name} as JSON.")
def new(name: str, folder: Path, force: bool, as_json: bool) -> None:
    """Write a commented scenario template, NAME.yaml, that runs and passes as it is.

    The file names the JSON Schema for editors (docs/scenario.schema.json) when it is
    written inside a turnsim checkout; elsewhere, `turnsim schema -o FILE` writes one.
    """
    from sim.scenario.parse import ScenarioError, load_scenario
    from sim.scenario.template import NAME, scenario_template

    stem = name.removesuffix(".yaml").removesuffix(".yml")
    if not NAME.fullmatch(stem):
        fail(
            f"{name!r} is not a scenario name: use letters, digits, '-', '_' or '.' "
            "(starting with a letter or digit), at most 100 characters"
        )
    path = folder / f"{stem}.yaml"
    if path.exists() and not force:
        fail(f"{path} exists; choose another name or pass --force to overwrite it")
    folder.mkdir(parents=True, exist_ok=True)
    schema = _published_schema(folder.resolve())
    relative = os.path.relpath(schema, folder.resolve()) if schema else None
    path.write_text(scenario_template(stem, file=str(path), schema=relative), encoding="utf-8")
    try:
        load_scenario(path)  # the template is a scenario: a broken one is our bug
    except ScenarioError as exc:  # pragma: no cover - tested by tests/cli/test_authoring.py
        fail(f"the written template does not load: {exc}")
    if as_json:
        emit_json({"path": str(path), "name": stem, "schema": relative})
        return
    click.echo(f"wrote {path}; run it with: turnsim run {path}")


@click.command("schema", epilog="Docs: docs/authoring.md.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the schema to this file instead of stdout.",
)
def schema(output: Path | None) -> None:
    """Print the JSON Schema of scenario files (for editors: completion and checks).

    The same document is published as docs/scenario.schema.json.
    """
    from sim.scenario.schema import schema_text

    text = schema_text()
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)
