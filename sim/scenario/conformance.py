"""``turnsim conformance``: a store checked rule by rule (the kit without pytest).

:func:`run_conformance` runs three things against the store a spec names and files every
result under the rule it proves:

1. the contract suite (:mod:`persisters.contract`), each check on fresh stores;
2. the shipped scenario suite, each scenario on a fresh store (its invariants and its
   own expectations);
3. an exploration: one scenario under many seeds.

A scenario's invariant maps to a rule by :data:`INVARIANT_RULES`; a failed expectation
or a run that errored counts against ``scenarios``. A rule *holds* when none of its
checks failed and no run violated it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import attrs

from persisters.contract import CHECKS, RULES, Outcome, run_check
from persisters.server_store import ScratchPool
from persisters.store import ConflictPolicy, TurnStore, refuse_rewrite
from persisters.stores import StoreSpec
from sim.scenario.explore import Exploration, explore_scenario
from sim.scenario.model import Scenario
from sim.scenario.result import ScenarioResult
from sim.scenario.runner import run_scenario

#: Rules only runs can show (the contract has no check of them).
RUN_RULES: dict[str, str] = {
    "runtime-bound": (
        "every snapshot of a turn carries the runtime bound when its inference started "
        "(rule 3: the pipelines over this store)"
    ),
    "scenarios": "every scenario's own expectations hold and no run errors",
}
#: Every row of the table, in order.
ALL_RULES: dict[str, str] = {**RULES, **RUN_RULES}

#: The rule each scenario invariant proves.
INVARIANT_RULES: dict[str, str] = {
    "never-rewritten": "write-once",
    "distinct-turns": "write-once",
    "nothing-lost": "append-only",
    "pointer-is-current": "pointer",
    "runtime-bound-at-start": "runtime-bound",
    "phases-agree": "runtime-bound",
}

#: Called as work advances: (stage, done, total).
Progress = Callable[[str, int, int], None]


def rule_of(failure: Any) -> str:
    """The rule a scenario failure counts against."""
    if failure.kind == "invariant":
        return INVARIANT_RULES.get(failure.name, "scenarios")
    return "scenarios"


@attrs.frozen
class RuleRow:
    """One rule of the table: its contract checks and the runs that violated it."""

    rule: str
    meaning: str
    checks_passed: int
    checks_failed: int
    checks_skipped: int
    scenario_failures: int
    exploration_failures: int
    has_checks: bool

    @property
    def holds(self) -> bool:
        return not (self.checks_failed or self.scenario_failures or self.exploration_failures)

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "holds": self.holds}


@attrs.define
class ConformanceReport:
    """Everything :func:`run_conformance` found, for the table and for ``--json``."""

    spec: str
    outcomes: list[Outcome] = attrs.field(factory=list)
    scenarios: list[ScenarioResult] = attrs.field(factory=list)
    exploration: Exploration | None = None

    def rows(self) -> list[RuleRow]:
        rows = []
        for rule, meaning in ALL_RULES.items():
            mine = [o for o in self.outcomes if o.rule == rule]
            scenario_failures = sum(
                1 for r in self.scenarios for f in r.failures if rule_of(f) == rule
            )
            explored = self.exploration.failed if self.exploration else []
            exploration_failures = sum(
                1 for s in explored if any(rule_of(f) == rule for f in s.failures)
            )
            rows.append(
                RuleRow(
                    rule,
                    meaning,
                    sum(o.status == "passed" for o in mine),
                    sum(o.status == "failed" for o in mine),
                    sum(o.status == "skipped" for o in mine),
                    scenario_failures,
                    exploration_failures,
                    rule in RULES,
                )
            )
        return rows

    @property
    def passed(self) -> bool:
        return all(r.holds for r in self.rows())

    def to_json(self) -> dict[str, Any]:
        explored = self.exploration
        return {
            "store": self.spec,
            "passed": self.passed,
            "rules": [r.to_json() for r in self.rows()],
            "contract": [o.to_json() for o in self.outcomes],
            "scenarios": [
                {
                    "scenario": r.scenario,
                    "passed": r.passed,
                    "failures": [{**f.to_json(), "rule": rule_of(f)} for f in r.failures],
                    "replay": f"{r.replay} --store {self.spec}",
                }
                for r in self.scenarios
            ],
            "exploration": explored.to_json() if explored else None,
        }


class FreshStores:
    """Fresh, empty stores of one spec, as the contract checks ask for them (temporary
    SQLite files in one folder removed by :meth:`close`; scratch server namespaces)."""

    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self._folder = tempfile.TemporaryDirectory(prefix="turnsim-conformance-")
        self._count = 0
        self._pool = ScratchPool(spec.server()[0]) if spec.is_server else None

    async def __call__(self, on_conflict: ConflictPolicy = refuse_rewrite) -> TurnStore:
        self._count += 1
        if self._pool is not None:
            return await self._pool.open(on_conflict=on_conflict)
        path = None
        if self.spec.kind == "sqlite":
            path = os.path.join(self._folder.name, f"store{self._count}.db")
        return await self.spec.open(path=path, on_conflict=on_conflict)

    def close(self) -> None:
        self._folder.cleanup()
        if self._pool is not None:
            self._pool.close()


async def run_conformance(
    spec: StoreSpec,
    scenarios: list[Scenario],
    *,
    explore: Scenario | None = None,
    seeds: range = range(0),
    on_progress: Progress | None = None,
    report: ConformanceReport | None = None,
) -> ConformanceReport:
    """Run the contract, ``scenarios`` and an exploration of ``explore`` over ``seeds``
    against ``spec``; fill and return ``report`` (a caller interrupted midway keeps what
    was found so far)."""
    report = report if report is not None else ConformanceReport(spec.label)
    progress = on_progress or (lambda stage, done, total: None)
    runs = [(c, case) for c in CHECKS for case in (c.cases or (None,))]
    fresh = FreshStores(spec)
    try:
        for n, (check, case) in enumerate(runs, 1):
            report.outcomes.append(await run_check(check, fresh, case))
            progress("contract", n, len(runs))
        for n, scenario in enumerate(scenarios, 1):
            report.scenarios.append(await run_scenario(scenario, store=spec, fresh=fresh))
            progress("scenarios", n, len(scenarios))
        if explore is not None and len(seeds):
            done = 0

            def advance(_scenario: Any, _seed: int, _result: Any) -> None:
                nonlocal done
                done += 1
                progress("exploration", done, len(seeds))

            def started(found: Exploration) -> None:
                report.exploration = found

            await explore_scenario(
                explore, seeds, store=spec, fresh=fresh, on_result=advance, on_start=started
            )
    finally:
        await anyio.to_thread.run_sync(fresh.close)
    return report
