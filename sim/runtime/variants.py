"""Bug variants: the real system's bugs, re-introduced by name, one substitution each.

The default build has none. Each variant swaps one stage of a pipeline, one store policy,
or one read path (one of the :class:`Parts` a build is assembled from), so the invariant
checkers can be shown to catch a real bug. Installed packages add their own through the
``turnsim.variants`` entry point group (:class:`Variant`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable

import attrs

from persisters.pipeline import (
    Guard,
    Outcome,
    Pipeline,
    Stage,
    always,
    bound_runtime,
    completed_only,
    default_turn_id,
    drop_failure,
    final_persister,
    keep_tool_calls_open,
    late_bound_runtime,
    pair_tool_calls,
    require_turn_id,
    snapshot_hook,
    surface_failure,
    swallow_failure,
)
from persisters.readpath import PointerAsHistoryReadPath, ReadPath
from persisters.store import ConflictPolicy, new_value_wins, refuse_rewrite
from sim.runtime.policies import (
    TurnIds,
    WritePolicy,
    awaited_writes,
    counter_turn_id,
    seeded_turn_id,
    timer_batched_writes,
    unawaited_tool_writes,
)

#: Built-in name -> one-line description (what the real system did).
VARIANTS: dict[str, str] = {
    "late-snapshot-runtime": (
        "the snapshot hook reads the conversation's current runtime at every phase instead of "
        "the runtime bound at inference start (stage bound_runtime -> late_bound_runtime)"
    ),
    "upsert-overwrite": (
        "the store upserts turn rows with 'a new non-empty runtime wins', so a later save "
        "rewrites an earlier turn (policy refuse_rewrite -> new_value_wins). The memory "
        "store reproduces the real system's silent overwrite; on SQLite the file's "
        "write-once trigger now refuses the rewrite, and the run fails on that surfaced "
        "refused save instead"
    ),
    "default-turn-id": (
        "turns get no id of their own and the persisters save them under the constant "
        "'turn', so each turn rewrites the one before (stage require_turn_id -> "
        "default_turn_id)"
    ),
    "swallow-snapshot-errors": (
        "a failed snapshot save is only logged as a warning; the snapshot is gone and "
        "nobody knows (outcome surface_failure -> swallow_failure)"
    ),
    "final-on-success-only": (
        "the final persister runs only when the inference succeeded and drops its own error "
        "(runs always -> completed_only, outcome surface_failure -> drop_failure): a failed "
        "or cancelled turn has no final save. As the real system ran it, with "
        "late-snapshot-runtime+upsert-overwrite, a switch then a failure leaves the turn on "
        "the new runtime for good, as no final save puts the bound one back"
    ),
    "pointer-as-history": (
        "reports give every turn the conversation's current runtime, so all history seems "
        "to come from the latest runtime (read path per-turn -> pointer-as-history)"
    ),
}


class UnknownVariantError(ValueError):
    pass


#: The entry point group a package registers its own bug variants in.
ENTRY_POINT_GROUP = "turnsim.variants"


@attrs.frozen
class Parts:
    """What a runtime is assembled from; a variant substitutes one (or a few) of them.

    ``runtime`` and ``turn_id`` are pipeline stages (:data:`persisters.pipeline.Stage`),
    ``on_snapshot_failed`` a pipeline outcome, ``on_conflict`` the store's
    :data:`~persisters.store.ConflictPolicy`, ``read_path`` how reports read a turn's
    runtime; ``mint_turn_ids`` False leaves every turn id empty.
    """

    runtime: Stage = bound_runtime
    turn_id: Stage = require_turn_id
    on_snapshot_failed: Outcome = surface_failure
    on_conflict: ConflictPolicy = refuse_rewrite
    read_path: ReadPath = attrs.field(factory=ReadPath)
    mint_turn_ids: bool = True
    #: When the final persister runs, and what a failed final save becomes.
    final_runs: Guard = always
    on_final_failed: Outcome = surface_failure
    #: How a turn id is minted (``mint_turn_ids`` True), how the final persister treats a
    #: tool call left open, how the engine waits for each phase's snapshot write and
    #: whether the final waits for writes still running.
    turn_ids: TurnIds = seeded_turn_id
    tool_calls: Stage = pair_tool_calls
    snapshot_writes: WritePolicy = awaited_writes
    final_waits_for_writes: bool = True
    #: Whether a server's boot closes the turns its restart interrupted (a final save).
    recover_on_boot: bool = True
    #: How a scheduled event reaches its conversation (:data:`policies.SCHEDULED_DELIVERIES`).
    scheduled_delivery: str = "actor"


@attrs.frozen
class Variant:
    """A bug variant: a name, one line saying what the real system did, and the
    substitution (``substitute(parts) -> parts``, usually one ``attrs.evolve``).

    A package adds its own by registering a :class:`Variant` (or a callable returning
    one) under the ``turnsim.variants`` entry point group, named as the variant::

        [project.entry-points."turnsim.variants"]
        lost-final-save = "mypkg.variants:LOST_FINAL_SAVE"
    """

    name: str
    description: str
    substitute: Callable[[Parts], Parts]
    #: Where the bug was found: system and issue/PR/commit (``pinocchio #202``).
    source: str = ""
    #: The shipped scenario (file stem in ``scenarios/``) that catches it.
    caught_by: str = ""


BUILT_IN: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "late-snapshot-runtime",
            VARIANTS["late-snapshot-runtime"],
            lambda p: attrs.evolve(p, runtime=late_bound_runtime),
        ),
        Variant(
            "upsert-overwrite",
            VARIANTS["upsert-overwrite"],
            lambda p: attrs.evolve(p, on_conflict=new_value_wins),
        ),
        Variant(
            "default-turn-id",
            VARIANTS["default-turn-id"],
            lambda p: attrs.evolve(p, turn_id=default_turn_id, mint_turn_ids=False),
        ),
        Variant(
            "swallow-snapshot-errors",
            VARIANTS["swallow-snapshot-errors"],
            lambda p: attrs.evolve(p, on_snapshot_failed=swallow_failure),
        ),
        Variant(
            "final-on-success-only",
            VARIANTS["final-on-success-only"],
            lambda p: attrs.evolve(p, final_runs=completed_only, on_final_failed=drop_failure),
        ),
        Variant(
            "pointer-as-history",
            VARIANTS["pointer-as-history"],
            lambda p: attrs.evolve(p, read_path=PointerAsHistoryReadPath()),
        ),
        Variant(
            "restart-id-counter",
            "Entity ids came from an in-memory counter that started at 1 again after every "
            "restart, so the prompts sent after a restart overwrote the entities stored before "
            "it. Substitution: the turn ids seeded_turn_id -> counter_turn_id ('turn-<n>' from "
            "a per-conversation counter the server process holds in memory).",
            lambda p: attrs.evolve(p, turn_ids=counter_turn_id),
            source="pinocchio #202 / commit 6f4e946e (go-go-golems/pinocchio)",
            caught_by="server_restart",
        ),
        Variant(
            "advance-before-durable",
            "The run moved on to the next model call before its session write of a tool's "
            "output had succeeded, and retrying the run never re-attempted that write. "
            "Substitution: the snapshot write policy awaited_writes -> unawaited_tool_writes "
            "(a tool round's snapshot is written in the background while the engine goes on).",
            lambda p: attrs.evolve(p, snapshot_writes=unawaited_tool_writes),
            source="openai-agents-python #4615 / #4630 (openai/openai-agents-python)",
            caught_by="slow_tool_results",
        ),
        Variant(
            "unpaired-tool-call",
            "A crash in the middle of a tool round left a stored tool call without its result, "
            "and the model API refused every later run of that agent. Substitution: the final "
            "persister's stage pair_tool_calls -> keep_tool_calls_open (a turn that ended mid "
            "tool round is saved as the engine left it).",
            lambda p: attrs.evolve(p, tool_calls=keep_tool_calls_open),
            source="letta #3250 (letta-ai/letta)",
            caught_by="crash_mid_tool_round",
        ),
        Variant(
            "no-restart-recovery",
            "After a cold restart a turn the restart interrupted stayed 'in progress' forever, "
            "as nothing on startup closed it. Substitution: the boot's recovery on -> off "
            "(recover_on_boot: no final save for the turns the restart interrupted).",
            lambda p: attrs.evolve(p, recover_on_boot=False),
            source="openai/codex PR #14125",
            caught_by="server_restart",
        ),
        Variant(
            "unlocked-scheduled-events",
            "Scheduled reminder events updated the conversation without taking its lock, "
            "racing the messages handled at the same time. Substitution: the scheduled "
            "delivery actor -> direct (the scheduler runs the event's inference itself, "
            "outside the conversation's actor).",
            lambda p: attrs.evolve(p, scheduled_delivery="direct"),
            source="Rasa #7887 / PR #7895 (RasaHQ/rasa)",
            caught_by="scheduled_reminders",
        ),
        Variant(
            "timer-batched-snapshots",
            "Writes batched by a flush timer could land after the turn's terminal event had "
            "been written, so a reader saw the turn end and then change. Substitution: the "
            "snapshot write policy awaited_writes -> timer_batched_writes (saves wait for the "
            "next 200 ms flush; the final persister writes at once and no longer waits).",
            lambda p: attrs.evolve(
                p, snapshot_writes=timer_batched_writes, final_waits_for_writes=False
            ),
            source="pinocchio commit 2e7899f7 (go-go-golems/pinocchio)",
            caught_by="inventory_to_planner",
        ),
    )
}

for _name, _variant in BUILT_IN.items():
    VARIANTS.setdefault(_name, _variant.description)


def _plug_in(entry: importlib.metadata.EntryPoint) -> Variant:
    try:
        loaded = entry.load()
        variant = loaded if isinstance(loaded, Variant) else loaded()
    except Exception as exc:  # a broken plug-in: say which, and how it broke
        raise UnknownVariantError(
            f"variant {entry.name!r} ({entry.value}, entry point group {ENTRY_POINT_GROUP!r}) "
            f"cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(variant, Variant) or variant.name != entry.name:
        raise UnknownVariantError(
            f"entry point {entry.name!r} = {entry.value} in {ENTRY_POINT_GROUP!r} must give a "
            f"sim.runtime.variants.Variant named {entry.name!r}"
        )
    return variant


def plug_in_names() -> list[str]:
    """Variant names registered by installed packages (not loaded)."""
    names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names - set(BUILT_IN))


def available() -> dict[str, Variant]:
    """Every variant: the built-in ones, then the installed packages' (by name).

    A plug-in may not reuse a built-in name (it is ignored: the built-in one wins).
    """
    found = dict(BUILT_IN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in found:
            found[entry.name] = _plug_in(entry)
    return found


@attrs.frozen
class Build:
    """The runtime as assembled for one run: pipelines, store policy, read path."""

    variants: tuple[str, ...]
    snapshot_hook: Pipeline
    final_persister: Pipeline
    on_conflict: ConflictPolicy
    read_path: ReadPath
    mint_turn_ids: bool
    turn_ids: TurnIds = seeded_turn_id
    snapshot_writes: WritePolicy = awaited_writes
    final_waits_for_writes: bool = True
    recover_on_boot: bool = True
    scheduled_delivery: str = "actor"


def parse_variants(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Variant names from ``"a+b"``, ``"a,b"`` or a list; validated, sorted, de-duplicated."""
    if spec is None:
        return ()
    names = spec.replace(",", "+").split("+") if isinstance(spec, str) else list(spec)
    out = set()
    for name in (n.strip() for n in names):
        if not name or name == "none":
            continue
        if name not in BUILT_IN and name not in plug_in_names():
            known = [*BUILT_IN, *plug_in_names()]
            raise UnknownVariantError(
                f"unknown variant {name!r}; known variants: {', '.join(known)} (combine with '+')"
            )
        out.add(name)
    if not out <= set(BUILT_IN):
        available()  # load the plug-ins now: a broken one is refused here, by name
    return tuple(sorted(out))


def build(variants: Iterable[str] = ()) -> Build:
    """Assemble the runtime with the named bug variants re-introduced (none by default).

    Each variant substitutes its parts in name order, so a combination is one build
    whatever order it was asked in.
    """
    chosen = parse_variants(list(variants))
    registry = BUILT_IN if all(n in BUILT_IN for n in chosen) else available()
    parts = Parts()
    for name in chosen:
        parts = registry[name].substitute(parts)
    return Build(
        variants=chosen,
        snapshot_hook=snapshot_hook(
            runtime=parts.runtime, turn_id=parts.turn_id, on_failed=parts.on_snapshot_failed
        ),
        final_persister=final_persister(
            turn_id=parts.turn_id,
            runs=parts.final_runs,
            on_failed=parts.on_final_failed,
            tool_calls=parts.tool_calls,
        ),
        on_conflict=parts.on_conflict,
        read_path=parts.read_path,
        mint_turn_ids=parts.mint_turn_ids,
        turn_ids=parts.turn_ids,
        snapshot_writes=parts.snapshot_writes,
        final_waits_for_writes=parts.final_waits_for_writes,
        recover_on_boot=parts.recover_on_boot,
        scheduled_delivery=parts.scheduled_delivery,
    )
