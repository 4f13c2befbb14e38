"""Run every bench script, each in its own process, then one summary of every ratio.

``make bench`` runs this. Each script prints its own tables and writes
``bench/results/<name>.json``; the summary below is read back from those files and
written to ``bench/results/summary.json``. ``--quick`` passes ``--quick`` to every script.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

from figures import BENCH, RESULTS, fmt, machine, out, parse_args, verdict
from rich.table import Table

#: In the order they run; scale goes in its own fresh process like every script.
SCRIPTS = ("persist", "peers", "pragmas", "migrate", "query", "scale", "scaling", "explore")
SCRIPTS = ("persist", "peers", "stores", "pragmas", "migrate", "query", "scale", "scaling")
BUDGET_S = 600


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    started = time.perf_counter()
    walls: dict[str, float] = {}
    failed: list[str] = []
    for name in SCRIPTS:
        (RESULTS / f"{name}.json").unlink(missing_ok=True)
        out.rule(f"bench/{name}.py")
        t0 = time.perf_counter()
        cmd = [sys.executable, str(BENCH / f"{name}.py"), *(["--quick"] if args.quick else [])]
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
        walls[name] = time.perf_counter() - t0
    total = time.perf_counter() - started

    table = Table(
        title=f"turnsim bench summary{' (--quick)' if args.quick else ''}", title_justify="left"
    )
    for column, justify in (
        ("bench", "left"),
        ("figure", "left"),
        ("ratio", "right"),
        ("goal", "right"),
        ("verdict", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    figures = []
    for name in SCRIPTS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            table.add_row(name, "[red]no result (the script failed)[/]", "", "", "")
            continue
        data = json.loads(path.read_text())
        for r in data["ratios"]:
            figures.append({"bench": name, **r})
            table.add_row(name, r["figure"], fmt(r["value"]), r["goal"] or "-", verdict(r["met"]))
    out.print(table)
    info = machine()
    out.print(
        f"{info['cores']} cores ({info['cpu']}), SQLite {info['sqlite']}, Python "
        f"{info['python']}; total {total:.0f}s "
        f"({', '.join(f'{k} {v:.0f}s' for k, v in walls.items())})"
    )
    if total > BUDGET_S and not args.quick:
        out.print(f"[red]over the {BUDGET_S}s budget[/]")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": " ".join(["python", *sys.argv]),
                "quick": args.quick,
                "machine": info,
                "total_s": round(total, 1),
                "wall_s": {k: round(v, 1) for k, v in walls.items()},
                "failed": failed,
                "figures": figures,
            },
            indent=2,
        )
        + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
