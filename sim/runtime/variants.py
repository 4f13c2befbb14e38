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
    serialize,
    serialize_live,
    snapshot_hook,
    surface_failure,
    swallow_failure,
)
from persisters.readpath import PointerAsHistoryReadPath, ReadPath
from persisters.store import ConflictPolicy, new_value_wins, refuse_rewrite
from sim.runtime.history import (
    LoadHistory,
    NextTurnId,
    Resume,
    Stamp,
    cloned_turn_id,
    fresh_turn_id,
    load_history,
    load_history_or_empty,
    resume_in_place,
    resume_on_copy,
    stamp_every_block,
    stamp_new_blocks,
)
from sim.runtime.policies import (
    TurnIds,
    WritePolicy,
    awaited_writes,
    counter_turn_id,
    seeded_turn_id,
    timer_batched_writes,
    unawaited_tool_writes,
)
from sim.runtime.profiles import current_profile, profile_at_start

#: Built-in name -> one-line description (what the real system did).
VARIANTS: dict[str, str] = {
    "late-snapshot-runtime": (
        "The snapshot hook read the conversation's current runtime at every phase instead of "
        "the runtime bound when the inference started, so a switch in flight split one "
        "turn's phases across two runtimes. Substitution: the snapshot hook's stage "
        "bound_runtime -> late_bound_runtime."
    ),
    "upsert-overwrite": (
        "The store upserted turn rows with 'a new non-empty runtime wins', so a later save "
        "rewrote an earlier turn's runtime. Substitution: the store policy refuse_rewrite -> "
        "new_value_wins (the memory store overwrites silently, as the real system did; on "
        "SQLite the file's write-once trigger refuses the rewrite, and the run fails on that "
        "surfaced refused save instead)."
    ),
    "default-turn-id": (
        "Turns got no id of their own and the persisters saved them under the constant "
        "'turn', so each turn rewrote the one before. Substitution: the stage "
        "require_turn_id -> default_turn_id (and no turn ids minted)."
    ),
    "swallow-snapshot-errors": (
        "A failed snapshot save was only logged as a warning, so the snapshot was gone and "
        "nobody knew. Substitution: the snapshot hook's outcome surface_failure -> "
        "swallow_failure."
    ),
    "final-on-success-only": (
        "The final persister ran only when the inference succeeded and its own error was "
        "dropped, so a failed or cancelled turn had no final save (with late-snapshot-runtime"
        "+upsert-overwrite, as the real system ran, a switch then a failure left the turn on "
        "the new runtime for good). Substitution: the final persister's guard always -> "
        "completed_only and its outcome surface_failure -> drop_failure."
    ),
    "pointer-as-history": (
        "Reports gave every turn the conversation's current runtime, so all history seemed "
        "to come from the latest runtime. Substitution: the read path per-turn -> "
        "pointer-as-history."
    ),
}


#: Where the first six variants come from: the real system turnsim reproduces.
SOURCE = "pinocchio webchat (go-go-golems), the per-turn runtime cutover; docs/bugs.md"


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
    #: How a snapshot's payload is made (a pipeline stage).
    snapshot_payload: Stage = serialize
    #: What a new inference starts from, and how its blocks are attributed
    #: (:mod:`sim.runtime.history`); which profile it runs on (:mod:`sim.runtime.profiles`).
    load_history: LoadHistory = load_history
    stamp_blocks: Stamp = stamp_new_blocks
    next_turn_id: NextTurnId = fresh_turn_id
    resume: Resume = resume_on_copy
    profile_for_inference: Callable[[str, str], str] = current_profile


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
            source=SOURCE,
            caught_by="inflight_switch",
        ),
        Variant(
            "upsert-overwrite",
            VARIANTS["upsert-overwrite"],
            lambda p: attrs.evolve(p, on_conflict=new_value_wins),
            source=SOURCE,
            caught_by="second_writer",
        ),
        Variant(
            "default-turn-id",
            VARIANTS["default-turn-id"],
            lambda p: attrs.evolve(p, turn_id=default_turn_id, mint_turn_ids=False),
            source=SOURCE,
            caught_by="inventory_to_planner",
        ),
        Variant(
            "swallow-snapshot-errors",
            VARIANTS["swallow-snapshot-errors"],
            lambda p: attrs.evolve(p, on_snapshot_failed=swallow_failure),
            source=SOURCE,
            caught_by="permanent_fault",
        ),
        Variant(
            "final-on-success-only",
            VARIANTS["final-on-success-only"],
            lambda p: attrs.evolve(p, final_runs=completed_only, on_final_failed=drop_failure),
            source=SOURCE,
            caught_by="fault_failed_inference_after_switch",
        ),
        Variant(
            "pointer-as-history",
            VARIANTS["pointer-as-history"],
            lambda p: attrs.evolve(p, read_path=PointerAsHistoryReadPath()),
            source=SOURCE,
            caught_by="inventory_to_planner",
        ),
        Variant(
            "stamp-every-block",
            "After each inference the result metadata was stamped onto every assistant block "
            "of the turn, the answers of earlier turns carried in its history included, so "
            "after a switch old answers claimed the new runtime. Substitution: the block stamp "
            "stamp_new_blocks -> stamp_every_block (history conversations and resumed runs).",
            lambda p: attrs.evolve(p, stamp_blocks=stamp_every_block),
            source="geppetto commit 5226a254 (go-go-golems/geppetto)",
            caught_by="history_attribution",
        ),
        Variant(
            "clone-turn-id",
            "A new run cloned the previous turn and kept its turn id, so the second prompt's "
            "saves went to the first turn and overwrote it. Substitution: the next turn id "
            "fresh_turn_id -> cloned_turn_id (the previous inference's id, the fresh one "
            "drawn and unused).",
            lambda p: attrs.evolve(p, next_turn_id=cloned_turn_id),
            source="geppetto commit e04dce4d (go-go-golems/geppetto)",
            caught_by="history_attribution",
        ),
        Variant(
            "live-snapshot-payload",
            "A checkpoint held a reference to a live container that was serialized only when "
            "the write ran, so an earlier checkpoint showed a later step's data. "
            "Substitution: the snapshot hook's stage serialize -> serialize_live (it reads the "
            "inference's turn as it is when the write runs; visible with durability: async "
            "and a store slower than a step).",
            lambda p: attrs.evolve(p, snapshot_payload=serialize_live),
            source="langgraph #8748 (langchain-ai/langgraph)",
            caught_by="async_snapshots",
        ),
        Variant(
            "resume-in-place",
            "Resuming a run from saved state adopted the state's lists by reference and "
            "appended to them, so running from a checkpoint rewrote that checkpoint. "
            "Substitution: resume resume_on_copy -> resume_in_place (the resumed run keeps "
            "the checkpoint's turn and metadata and appends to it).",
            lambda p: attrs.evolve(p, resume=resume_in_place),
            source="openai-agents-python PR #4251 (openai/openai-agents-python)",
            caught_by="resume_checkpoint",
        ),
        Variant(
            "ignore-history-error",
            "A failed history load was ignored and the inference ran with an empty history, "
            "so the model answered without the conversation so far and the turn was stored "
            "as if it had none. Substitution: load_history -> load_history_or_empty (the "
            "error becomes a warning event).",
            lambda p: attrs.evolve(p, load_history=load_history_or_empty),
            source="pinocchio commit eee44ff2 (go-go-golems/pinocchio)",
            caught_by="history_load_failure",
        ),
        Variant(
            "profile-resolved-once",
            "The model was resolved once when the chat started, so a later switch changed "
            "what the user saw but not what ran. Substitution: the inference's profile "
            "current_profile -> profile_at_start (the conversation's profile when it "
            "started).",
            lambda p: attrs.evolve(p, profile_for_inference=profile_at_start),
            source="gptme #966 / PR #967 (gptme/gptme)",
            caught_by="inventory_to_planner",
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
    load_history: LoadHistory = load_history
    stamp_blocks: Stamp = stamp_new_blocks
    next_turn_id: NextTurnId = fresh_turn_id
    resume: Resume = resume_on_copy
    profile_for_inference: Callable[[str, str], str] = current_profile


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
            runtime=parts.runtime,
            turn_id=parts.turn_id,
            on_failed=parts.on_snapshot_failed,
            payload=parts.snapshot_payload,
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
        load_history=parts.load_history,
        stamp_blocks=parts.stamp_blocks,
        next_turn_id=parts.next_turn_id,
        resume=parts.resume,
        profile_for_inference=parts.profile_for_inference,
    )
