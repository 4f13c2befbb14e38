"""The suite's mutation score: which bug variant each scenario catches, and which none does.

Each scenario runs once as it is (it must pass: a scenario that fails without a bug
catches nothing) and once per bug variant of :data:`sim.runtime.variants.VARIANTS` (the
registry, whatever it holds). A variant is *caught* by a scenario when the run fails; the
report says by what (the invariants, or the ``expect_*`` steps, that failed). ``turnsim
variants --check PATH...`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from persisters.stores import SQLITE, StoreSpec
from sim.runtime.variants import VARIANTS, Variant
from sim.scenario.invariants import INVARIANTS
from sim.scenario.model import Scenario
from sim.scenario.parse import load_scenario
from sim.scenario.result import ScenarioResult
from sim.scenario.runner import run_scenario


def caught_by(result: ScenarioResult) -> tuple[str, ...]:
    """What failed in a run, by name: invariants, expectation steps, ``error: Type``."""
    names = set()
    for f in result.failures:
        names.add(f"error: {f.name}" if f.kind == "error" else f.name)
    return tuple(sorted(names))


@attrs.define
class ScenarioCatches:
    """One scenario: what failed without a variant, and what each variant was caught by."""

    scenario: str
    path: str
    baseline: tuple[str, ...]  # failures without any variant (then nothing counts)
    catches: dict[str, tuple[str, ...]] = attrs.field(factory=dict)  # variant -> names

    @property
    def sound(self) -> bool:
        return not self.baseline

    def caught(self) -> list[str]:
        """The variants this scenario catches (none when it fails without a variant)."""
        return [v for v, names in self.catches.items() if names] if self.sound else []

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "path": self.path,
            "passes_without_variant": self.sound,
            "baseline_failures": list(self.baseline),
            "catches": {v: list(n) for v, n in self.catches.items() if n and self.sound},
        }


@attrs.define
class MutationReport:
    """Every scenario's catches, over the variants checked."""

    variants: tuple[str, ...]
    scenarios: list[ScenarioCatches] = attrs.field(factory=list)

    def catchers(self, variant: str) -> list[ScenarioCatches]:
        return [s for s in self.scenarios if variant in s.caught()]

    def uncaught(self) -> list[str]:
        """Variants no (sound) scenario catches."""
        return [v for v in self.variants if not self.catchers(v)]

    @property
    def score(self) -> float:
        """The share of variants caught by at least one scenario (1.0: all)."""
        return (
            (len(self.variants) - len(self.uncaught())) / len(self.variants)
            if self.variants
            else 1.0
        )

    def to_json(self) -> dict[str, Any]:
        caught = len(self.variants) - len(self.uncaught())
        return {
            "variants": list(self.variants),
            "caught": caught,
            "uncaught": self.uncaught(),
            "score": round(self.score, 4),
            "by_variant": {v: [s.path for s in self.catchers(v)] for v in self.variants},
            "scenarios": [s.to_json() for s in self.scenarios],
        }


async def mutation_matrix(
    scenarios: Sequence[Scenario],
    variants: Iterable[str] | None = None,
    *,
    store: StoreSpec = SQLITE,
    on_run: Callable[[Scenario, str, ScenarioResult], None] | None = None,
) -> MutationReport:
    """Run each scenario without a variant, then under each variant (default: all of
    :data:`VARIANTS`), each on its own seed; ``on_run(scenario, variant or "", result)``
    is called after every run (progress)."""
    chosen = tuple(VARIANTS) if variants is None else tuple(variants)
    report = MutationReport(variants=chosen)
    for scenario in scenarios:
        baseline = await run_scenario(scenario, store=store)
        if on_run is not None:
            on_run(scenario, "", baseline)
        entry = ScenarioCatches(scenario.name, scenario.path, caught_by(baseline))
        for variant in chosen:
            result = await run_scenario(scenario, variants=(variant,), store=store)
            entry.catches[variant] = caught_by(result)
            if on_run is not None:
                on_run(scenario, variant, result)
        report.scenarios.append(entry)
    return report


@attrs.frozen
class Description:
    """``turnsim variants --describe NAME``: where a variant comes from, what it
    substitutes, and what catches it (measured by running its catching scenario)."""

    name: str
    source: str
    bug: str
    substitution: str
    scenario: str  # the catching scenario's file stem ('' when the variant names none)
    path: str  # where it was found ('' when not found)
    caught_by: tuple[str, ...]  # what failed when it ran under the variant
    passes_without: bool  # the scenario passes on the default build

    @property
    def invariants(self) -> tuple[str, ...]:
        return tuple(n for n in self.caught_by if n in INVARIANTS)

    @property
    def replay(self) -> str:
        shown = self.path or f"scenarios/{self.scenario}.yaml"
        return f"turnsim run {shown} --variant {self.name}"

    @property
    def caught(self) -> bool:
        return bool(self.path) and self.passes_without and bool(self.caught_by)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "bug": self.bug,
            "substitution": self.substitution,
            "scenario": self.scenario,
            "path": self.path,
            "passes_without_variant": self.passes_without,
            "caught_by": list(self.caught_by),
            "invariants": list(self.invariants),
            "replay": self.replay,
        }


def split_description(description: str) -> tuple[str, str]:
    """``(the bug, the substitution)`` of a two-sentence description ('Substitution: ...')."""
    bug, _, substitution = description.partition(" Substitution: ")
    return bug.strip(), substitution.strip()


async def describe(variant: Variant, folders: Sequence[Path]) -> Description:
    """Describe ``variant``; its catching scenario (``caught_by``) is looked up in
    ``folders`` in order and run without and with the variant."""
    bug, substitution = split_description(variant.description)
    found = (
        next(
            (
                f / f"{variant.caught_by}.yaml"
                for f in folders
                if (f / f"{variant.caught_by}.yaml").is_file()
            ),
            None,
        )
        if variant.caught_by
        else None
    )
    caught: tuple[str, ...] = ()
    passes = False
    path = ""
    if found is not None:
        scenario = load_scenario(found)
        path = scenario.path
        passes = (await run_scenario(scenario)).passed
        caught = caught_by(await run_scenario(scenario, variants=(variant.name,)))
    return Description(
        variant.name,
        variant.source,
        bug,
        substitution,
        variant.caught_by,
        path,
        caught,
        passes,
    )
