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
exactly the text that is written: ``turnsim run FILE --seed N`` replays it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from sim.runtime.profiles import Profile
from sim.scenario.parse import (
    Cancel,
    Crash,
    ExpectConversation,
    ExpectFailure,
    ExpectTurn,
    ExpectTurnCount,
    InjectFault,
    MakeReadOnly,
    Resave,
    Scenario,
    ScenarioError,
    Send,
    Sleep,
    SwitchProfile,
    WaitIdle,
    parse_scenario,
)
from sim.scenario.runner import Failure, ScenarioResult, replay_command, run_scenario


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
        }


# -- rendering a scenario back to YAML --------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.@/-]*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
# Characters a YAML reader would refuse, fold or take for a line break inside quotes.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted one
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _flow(fields: Sequence[tuple[str, Any]]) -> str:
    parts = []
    for key, value in fields:
        if isinstance(value, tuple | list):
            parts.append(f"{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            parts.append(f"{key}: {_scalar(value)}")
    return "{" + ", ".join(parts) + "}"


def _opt(fields: list[tuple[str, Any]], key: str, value: Any, default: Any = None) -> None:
    if value is not None and value != default:
        fields.append((key, value))


def _step_fields(step: Any) -> list[tuple[str, Any]]:
    f: list[tuple[str, Any]] = []
    if isinstance(step, Send):
        f += [("conv", step.conv)]
        _opt(f, "turn", step.turn)
        f += [("prompt", step.prompt)]
        _opt(f, "wait", step.wait, True)
        _opt(f, "profile", step.profile)
    elif isinstance(step, SwitchProfile):
        f += [("conv", step.conv), ("profile", step.profile)]
        _opt(f, "at", step.at)
        if step.at is not None or step.within_ms != 1000:
            _opt(f, "within_ms", step.within_ms, 1000)
    elif isinstance(step, WaitIdle | Cancel | Crash):
        f += [("conv", step.conv)]
    elif isinstance(step, Sleep):
        f += [("ms", step.ms)]
    elif isinstance(step, MakeReadOnly):
        pass  # no fields: rendered as make_readonly: {}
    elif isinstance(step, InjectFault):
        _opt(f, "point", step.point, "store.save")
        _opt(f, "conv", step.conv)
        _opt(f, "phase", step.phase)
        _opt(f, "pipeline", step.pipeline)
        _opt(f, "kind", step.kind, "permanent")
        _opt(f, "times", step.times, 1)
        _opt(f, "skip", step.skip, 0)
    elif isinstance(step, Resave):
        f += [("conv", step.conv), ("turn", step.turn)]
        _opt(f, "runtime_key", step.runtime_key)
        _opt(f, "from", step.source, "metadata")
        _opt(f, "refusal_expected", step.refusal_expected, False)
    elif isinstance(step, ExpectTurn):
        f += [("conv", step.conv), ("turn", step.turn)]
        _opt(f, "runtime_key", step.runtime_key)
        _opt(f, "phases", step.phases)
        _opt(f, "outcome", step.outcome)
    elif isinstance(step, ExpectTurnCount):
        f += [("conv", step.conv), ("count", step.count)]
    elif isinstance(step, ExpectConversation):
        f += [("conv", step.conv)]
        _opt(f, "current_runtime_key", step.current_runtime_key)
        _opt(f, "session", step.session)
    elif isinstance(step, ExpectFailure):
        _opt(f, "conv", step.conv)
        _opt(f, "turn", step.turn)
        _opt(f, "phase", step.phase)
        _opt(f, "pipeline", step.pipeline)
        _opt(f, "count", step.count)
        _opt(f, "contains", step.contains)
    else:  # pragma: no cover - a new step kind needs a branch here
        raise TypeError(f"cannot render step {step!r}")
    return f


def _profile_fields(p: Profile) -> list[tuple[str, Any]]:
    f: list[tuple[str, Any]] = [("runtime_key", p.runtime_key)]
    defaults = Profile(slug=p.slug, runtime_key=p.runtime_key)
    for key in ("latency_ms", "jitter_ms", "tool_rounds", "tool_latency_ms", "replies"):
        _opt(f, key, getattr(p, key), getattr(defaults, key))
    return f


def render_scenario(scenario: Scenario, *, header: Sequence[str] = ()) -> str:
    """The scenario as YAML that :func:`sim.scenario.parse.parse_scenario` reads back equal."""
    lines = [f"# {h}" for h in header]
    lines.append(f"name: {_scalar(scenario.name)}")
    if scenario.description:
        lines.append(f"description: {_scalar(scenario.description)}")
    lines.append(f"seed: {scenario.seed}")
    if scenario.store_latency_ms:
        lines.append(f"store_latency_ms: {scenario.store_latency_ms}")
    if (scenario.retry_attempts, scenario.retry_backoff_ms) != (3, 10):
        retry = [("attempts", scenario.retry_attempts), ("backoff_ms", scenario.retry_backoff_ms)]
        lines.append(f"retry: {_flow(retry)}")
    lines.append("profiles:")
    for p in scenario.profiles:
        lines.append(f"  {_scalar(p.slug)}: {_flow(_profile_fields(p))}")
    lines.append("conversations:")
    for c in scenario.conversations:
        fields: list[tuple[str, Any]] = [("profile", c.profile)]
        _opt(fields, "session", c.session)
        lines.append(f"  {_scalar(c.name)}: {_flow(fields)}")
    lines.append("steps:")
    for located in scenario.steps:
        fields = _step_fields(located.step)
        body = _flow(fields) if fields else "{}"
        lines.append(f"  - {located.kind}: {body}")
    return "\n".join(lines) + "\n"


# -- candidates -------------------------------------------------------------------------


def _turn_of(step: Any) -> str | None:
    if isinstance(step, Resave | ExpectTurn | ExpectFailure):
        return step.turn
    return None


def _conv_of(step: Any) -> str | None:
    return getattr(step, "conv", None)


def without_steps(scenario: Scenario, drop: set[int]) -> Scenario:
    """The scenario without the steps at positions ``drop`` and the steps naming their turns."""
    labels = {
        s.step.turn
        for i, s in enumerate(scenario.steps)
        if i in drop and isinstance(s.step, Send) and s.step.turn
    }
    kept = tuple(
        s for i, s in enumerate(scenario.steps) if i not in drop and _turn_of(s.step) not in labels
    )
    return scenario.with_steps(kept)


def without_conversation(scenario: Scenario, name: str) -> Scenario:
    """The scenario without one conversation, its steps and the steps naming its turns."""
    drop = {i for i, s in enumerate(scenario.steps) if _conv_of(s.step) == name}
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
        if isinstance(s.step, Send) and s.step.profile:
            used.add(s.step.profile)
        if isinstance(s.step, SwitchProfile):
            used.add(s.step.profile)
    return used


def _step_candidates(scenario: Scenario) -> list[Scenario]:
    """One simplification each: a background switch made immediate, a send that waits."""
    out = []
    for i, located in enumerate(scenario.steps):
        step = located.step
        simpler: Any = None
        if isinstance(step, SwitchProfile) and step.at is not None:
            simpler = attrs.evolve(step, at=None, within_ms=1000)
        elif isinstance(step, Send) and not step.wait:
            simpler = attrs.evolve(step, wait=True)
        elif isinstance(step, InjectFault) and step.times > 1:
            simpler = attrs.evolve(step, times=1)
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
    ) -> None:
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
        return await run_scenario(scenario, seed=seed, variants=self.variants)

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
) -> ShrinkResult:
    """Shrink one failing run; the result's ``text`` is meant to be written to ``out_path``.

    Runs at most ``max_runs`` candidate runs (plus one that confirms the result). If the
    original run does not fail with ``group`` the result is the original scenario.
    """
    chosen = tuple(sorted(set(variants)))
    original = await run_scenario(scenario, seed=seed, variants=chosen)
    allowed = failure_groups(original.failures)
    search = _Search(chosen, group, allowed, out_path, max_runs, tries, on_run)
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
    confirmed = await run_scenario(final, seed=best_seed, variants=chosen)
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
    "render_scenario",
    "shrink_failure",
    "size_of",
    "without_conversation",
    "without_steps",
]
