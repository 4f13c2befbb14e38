"""Print the last bench results as Markdown tables, for ``docs/performance.md``.

Reads ``bench/results/summary.json`` and every ``bench/results/<name>.json`` written by
``run_all.py`` (or by the scripts on their own) and prints the summary table, then each
script's rows, in the same number format as the terminal tables. Nothing is measured.

    .venv/bin/python bench/markdown.py > /tmp/tables.md
"""

from __future__ import annotations

import json
from typing import Any

from figures import RESULTS, fmt, parse_args
from run_all import SCRIPTS


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else fmt(value)


def table(columns: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns left-aligned, the others right-aligned."""
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" if i < left else "---:" for i in range(len(columns))) + " |"
    body = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "-"}[met]


def main(argv: list[str] | None = None) -> int:
    parse_args(__doc__, argv)
    summary_path = RESULTS / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        print(
            table(
                ["bench", "figure", "ratio", "goal", "verdict"],
                [
                    [f["bench"], f["figure"], fmt(f["value"]), f["goal"] or "-", verdict(f["met"])]
                    for f in summary["figures"]
                ],
                left=2,
            )
        )
        walls = ", ".join(f"{k} {v:.0f} s" for k, v in summary["wall_s"].items())
        print(f"\nTotal {summary['total_s']:.0f} s ({walls}); {summary['when']}.\n")
    for name in SCRIPTS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            print(f"**{name}**: no result yet (`.venv/bin/python bench/{name}.py` writes one)\n")
            continue
        data = json.loads(path.read_text())
        if data["rows"]:
            print(f"**{data['title']}**\n")
            print(table(data["columns"], data["rows"]))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
