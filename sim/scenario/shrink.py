"""Shrinking a failing run: the smallest scenario that still fails the same way.

Given a scenario, a seed, the bug variants and a failure group (an invariant's name,
``expectation:<step>`` or ``error:<type>``), :func:`shrink_failure` first pins every
``at: random`` switch to the delay it drew in the failing run, then removes conversations,
then chunks of steps (delta-debugging style, halving the chunk size), then simplifies
steps (a background switch made immediate, a send that waits, a fault that fires once) and
profiles (no tool rounds, no jitter, unused ones dropped), keeping each change only if the
run still fails with that group and with nothing it did not fail with before. Removing a
``send`` also removes the steps that name its turn; removing a conversation removes its
steps.

A smaller scenario makes different draws from the seed's streams, so a candidate is run
under its current seed first and then under a few neighbouring seeds (``tries``); the
result records the seed it fails under, in the file's ``seed:`` and its replay command.

Every candidate is rendered to YAML and parsed back before it runs, so what runs is
exactly the text that is written: ``turnsim run FILE --seed N`` replays it. Candidates run
on the store the caller names (explore's fast in-memory store); the result is confirmed
on a SQLite file, the store ``turnsim run`` replays on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from persisters.stores import SQLITE, StoreSpec
from sim.scenario.actions import Send, SwitchProfile
from sim.scenario.model import Scenario
from sim.scenario.parse import ScenarioError, parse_scenario
from sim.scenario.render import render_scenario
from sim.scenario.result import Failure, ScenarioResult, replay_command
from sim.scenario.runner import run_scenario


def failure_group(f: Failure) -> str:
    """The group a failure is reported under: invariant name, or kind-qualified name."""
    return f.name if f.kind == "invariant" else f"{f.kind}:{f.name}"


def failure_groups(failures: Iterable[Failure]) -> set[str]:
    return {failure_group(f) for f in failures}


@attrs.frozen
class Size:
    """How big a scenario is, in the units shrinking reduces."""

    conversations: int
    turns: int
    steps: int

    def key(self) -> tuple[int, int, int]:
        return (self.conversations, self.turns, self.steps)

    def __str__(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        return ", ".join(
            (n(self.conversations, "conversation"), n(self.turns, "turn"), n(self.steps, "step"))
        )

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Size:
        return cls(int(doc["conversations"]), int(doc["turns"]), int(doc["steps"]))


def size_of(scenario: Scenario) -> Size:
    return Size(
        conversations=len(scenario.conversations),
        turns=sum(1 for s in scenario.steps if isinstance(s.step, Send)),
        steps=len(scenario.steps),
    )


@attrs.frozen
class ShrinkResult:
    """The smallest failing scenario found, where it is, and how to replay it."""

    group: str
    source: str
    variants: tuple[str, ...]
    original_seed: int
    seed: int
    original_size: Size
    size: Size
    path: str
    text: str
    runs: int
    failures: tuple[Failure, ...]
    #: What the smallest scenario is, whatever seed it fails under (:func:`shape_of`):
    #: two failures that shrink to the same shape are the same bug.
    shape: str = ""

    @property
    def replay(self) -> str:
        return replay_command(self.path, self.seed, self.variants)

    @property
    def reduced(self) -> bool:
        return self.size.key() < self.original_size.key()

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "source": self.source,
            "variants": list(self.variants),
            "original_seed": self.original_seed,
            "seed": self.seed,
            "original_size": self.original_size.to_json(),
            "size": self.size.to_json(),
            "path": self.path,
            "runs": self.runs,
            "replay": self.replay,
            "failures": [f.to_json() for f in self.failures],
            "shape": self.shape,
            "text": self.text,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ShrinkResult:
        """The result :meth:`to_json` wrote (a report read back by ``explore merge``)."""
        return cls(
            group=doc["group"],
            source=doc["source"],
            variants=tuple(doc["variants"]),
            original_seed=int(doc["original_seed"]),
            seed=int(doc["seed"]),
            original_size=Size.from_json(doc["original_size"]),
            size=Size.from_json(doc["size"]),
            path=doc["path"],
            text=doc["text"],
            runs=int(doc["runs"]),
            failures=tuple(Failure.from_json(f) for f in doc["failures"]),
            shape=doc.get("shape", ""),
        )


def shape_of(scenario: Scenario) -> str:
    """A digest of the scenario as a file, its seed left out."""
    text = render_scenario(attrs.evolve(scenario, seed=0))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- candidates -------------------------------------------------------------------------


def without_steps(scenario: Scenario, drop: set[int]) -> Scenario:
    """The scenario without the steps at positions ``drop`` and the steps naming their turns."""
    labels = {
        (s.step.conversation(), label)
        for i, s in enumerate(scenario.steps)
        if i in drop and (label := s.step.turn_defined())
    }
    kept = tuple(
        s
        for i, s in enumerate(scenario.steps)
        if i not in drop and (s.step.conversation(), s.step.turn_needed()) not in labels
    )
    return scenario.with_steps(kept)


def without_conversation(scenario: Scenario, name: str) -> Scenario:
    """The scenario without one conversation, its steps and the steps naming its turns."""
    drop = {i for i, s in enumerate(scenario.steps) if s.step.conversation() == name}
    smaller = without_steps(scenario, drop)
    return attrs.evolve(
        smaller, conversations=tuple(c for c in scenario.conversations if c.name != name)
    )


def pin_random_switches(scenario: Scenario, events: Sequence[dict[str, Any]]) -> Scenario:
    """Replace each ``at: random`` switch with the delay it drew in the run of ``events``.

    The run stays the same (the delay came from its own stream), but later removals no
    longer move it, and the file says when the switch lands. A switch that never fired
    keeps ``at: random``.
    """
    started = {e["step"]: e["t_ms"] for e in events if e["event"] == "step.started"}
    fired = {
        e["step"]: e["t_ms"]
        for e in events
        if e["event"] == "profile.switched" and e.get("reason") == "switch_profile"
    }
    steps = []
    for located in scenario.steps:
        step = located.step
        index = located.index
        if (
            isinstance(step, SwitchProfile)
            and step.at == "random"
            and index in started
            and index in fired
        ):
            step = attrs.evolve(step, at=fired[index] - started[index], within_ms=1000)
        steps.append(attrs.evolve(located, step=step))
    return scenario.with_steps(tuple(steps))


def _used_profiles(scenario: Scenario) -> set[str]:
    used = {c.profile for c in scenario.conversations}
    for s in scenario.steps:
        profile = s.step.profile_named()
        if profile:
            used.add(profile)
    return used


def _step_candidates(scenario: Scenario) -> list[Scenario]:
    """One simplification each (each step's own ``simpler()``): a background switch made
    immediate, a send that waits, a fault that fires once."""
    out = []
    for i, located in enumerate(scenario.steps):
        simpler = located.step.simpler()
        if simpler is not None:
            steps = list(scenario.steps)
            steps[i] = attrs.evolve(located, step=simpler)
            out.append(scenario.with_steps(tuple(steps)))
    return out


def _profile_candidates(scenario: Scenario) -> list[Scenario]:
    out = []
    used = _used_profiles(scenario)
    if any(p.slug not in used for p in scenario.profiles):
        out.append(
            attrs.evolve(scenario, profiles=tuple(p for p in scenario.profiles if p.slug in used))
        )
    for i, p in enumerate(scenario.profiles):
        simpler = []
        if p.tool_rounds:
            simpler.append(attrs.evolve(p, tool_rounds=0, tool_latency_ms=50))
            if p.tool_rounds > 1:
                simpler.append(attrs.evolve(p, tool_rounds=p.tool_rounds // 2))
        if p.jitter_ms:
            simpler.append(attrs.evolve(p, jitter_ms=0))
        for q in simpler:
            profiles = (*scenario.profiles[:i], q, *scenario.profiles[i + 1 :])
            out.append(attrs.evolve(scenario, profiles=profiles))
    return out


# -- the search -------------------------------------------------------------------------


class _Search:
    def __init__(
        self,
        variants: tuple[str, ...],
        group: str,
        allowed: set[str],
        out_path: str,
        max_runs: int,
        tries: int,
        on_run: Callable[[], None] | None,
        store: StoreSpec,
    ) -> None:
        self.store = store
        self.variants = variants
        self.group = group
        self.allowed = allowed
        self.out_path = out_path
        self.max_runs = max_runs
        self.tries = tries
        self.on_run = on_run
        self.runs = 0

    @property
    def exhausted(self) -> bool:
        return self.runs >= self.max_runs

    async def run(self, scenario: Scenario, seed: int) -> ScenarioResult:
        self.runs += 1
        if self.on_run is not None:
            self.on_run()
        return await run_scenario(scenario, seed=seed, variants=self.variants, store=self.store)

    def same_failure(self, result: ScenarioResult) -> bool:
        groups = failure_groups(result.failures)
        return self.group in groups and groups <= self.allowed

    async def attempt(self, candidate: Scenario, seed: int) -> tuple[Scenario, int] | None:
        """The candidate (as parsed back from YAML) and a seed it fails under, or None."""
        try:
            parsed = parse_scenario(render_scenario(candidate), self.out_path)
        except ScenarioError:
            return None  # the removal left something dangling; not a scenario
        for k in range(self.tries):
            if self.exhausted:
                return None
            s = seed + k
            if self.same_failure(await self.run(attrs.evolve(parsed, seed=s), s)):
                return attrs.evolve(parsed, seed=s), s
        return None


async def shrink_failure(
    scenario: Scenario,
    seed: int,
    variants: Iterable[str],
    group: str,
    *,
    out_path: str,
    max_runs: int = 200,
    tries: int = 3,
    on_run: Callable[[], None] | None = None,
    store: StoreSpec = SQLITE,
) -> ShrinkResult:
    """Shrink one failing run; the result's ``text`` is meant to be written to ``out_path``.

    Runs at most ``max_runs`` candidate runs on ``store`` (plus one that confirms the
    result on a SQLite file: its ``failures`` are what the replay command shows). If the
    original run does not fail with ``group`` the result is the original scenario.
    Deterministic: the same arguments give the same result, on any store.
    """
    chosen = tuple(sorted(set(variants)))
    original = await run_scenario(scenario, seed=seed, variants=chosen, store=store)
    allowed = failure_groups(original.failures)
    search = _Search(chosen, group, allowed, out_path, max_runs, tries, on_run, store)
    best, best_seed = attrs.evolve(scenario, seed=seed), seed
    if group in allowed:
        pinned = await search.attempt(pin_random_switches(best, original.events), seed)
        if pinned is not None:
            best, best_seed = pinned
        best, best_seed = await _shrink(search, best, best_seed)
    header = [
        f"Shrunk by `turnsim explore` from {scenario.path} seed {seed}"
        + (f" [{'+'.join(chosen)}]" if chosen else "")
        + f": still fails with {group}.",
        f"Replay: {replay_command(out_path, best_seed, chosen)}",
    ]
    text = render_scenario(best, header=header)
    final = parse_scenario(text, out_path)
    confirmed = await run_scenario(final, seed=best_seed, variants=chosen, store=SQLITE)
    return ShrinkResult(
        group=group,
        source=scenario.path,
        variants=chosen,
        original_seed=seed,
        seed=best_seed,
        original_size=size_of(scenario),
        size=size_of(final),
        path=out_path,
        text=text,
        runs=search.runs,
        failures=tuple(confirmed.failures),
        shape=shape_of(final),
    )


async def _shrink(search: _Search, best: Scenario, seed: int) -> tuple[Scenario, int]:
    changed = True
    while changed and not search.exhausted:
        changed = False
        # 1. whole conversations
        for conv in [c.name for c in best.conversations]:
            if len(best.conversations) == 1 or search.exhausted:
                break
            found = await search.attempt(without_conversation(best, conv), seed)
            if found is not None:
                (best, seed), changed = found, True
        # 2. chunks of steps, halving the chunk size
        chunk = max(1, len(best.steps) // 2)
        while chunk >= 1 and not search.exhausted:
            start = 0
            while start < len(best.steps) and not search.exhausted:
                drop = set(range(start, min(start + chunk, len(best.steps))))
                candidate = without_steps(best, drop)
                if candidate.steps and len(candidate.steps) < len(best.steps):
                    found = await search.attempt(candidate, seed)
                    if found is not None:
                        (best, seed), changed = found, True
                        continue  # the same start now holds the next steps
                start += chunk
            chunk //= 2
        # 3. simpler steps, then simpler profiles (candidates recomputed after a success)
        for make in (_step_candidates, _profile_candidates):
            progress = True
            while progress and not search.exhausted:
                progress = False
                for candidate in make(best):
                    found = await search.attempt(candidate, seed)
                    if found is not None:
                        (best, seed), changed, progress = found, True, True
                        break
    return best, seed


__all__ = [
    "ShrinkResult",
    "Size",
    "failure_group",
    "failure_groups",
    "pin_random_switches",
    "shape_of",
    "shrink_failure",
    "size_of",
    "without_conversation",
    "without_steps",
]
