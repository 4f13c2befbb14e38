"""What ``turnsim check`` reports: findings with their evidence, and what it could not judge."""

from __future__ import annotations

from typing import Any

import attrs


class CheckInputError(ValueError):
    """The evidence cannot be read at all (a missing file, a malformed log line, ...)."""


@attrs.frozen
class Finding:
    """One broken invariant and the minimal evidence that proves it.

    ``evidence`` names events by ``seq`` (``"seq 12"``) in a log, rows by primary key
    (``"turns (c1, s1, t1)"``, ``"turn_snapshots 7"``) in a database. ``run`` is the
    scenario (and seed) of the log's run it was found in; ``""`` for a database.
    """

    invariant: str
    message: str
    evidence: tuple[str, ...]
    conv_id: str = ""
    turn_id: str = ""
    run: str = ""

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["evidence"] = list(self.evidence)
        return out


@attrs.frozen
class NotJudged:
    """An invariant this evidence cannot prove or disprove, and why."""

    invariant: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class CheckReport:
    """The verdict on one source (a log file, a database file or DSN)."""

    source: str
    kind: str  # "log" or the database's layout ("turnsim", "normalized", ...)
    judged: tuple[str, ...]
    findings: tuple[Finding, ...]
    not_judged: tuple[NotJudged, ...] = ()
    runs: int = 0  # runs found in a log

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "ok": self.ok,
            "runs": self.runs,
            "judged": list(self.judged),
            "findings": [f.to_json() for f in self.findings],
            "not_judged": [n.to_json() for n in self.not_judged],
        }
