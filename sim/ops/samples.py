"""Realistic old (pre-cutover) sample databases, generated deterministically from a seed.

Two styles, as the real migration was validated with (domain.md, "The old schema"):

* :func:`make_old_turns_db` writes a ``turns.db``-style turn store: the old ``turns`` and
  ``turn_snapshots`` tables (:data:`persisters.schema.OLD_TURNS_SCHEMA`), runtime and
  inference id only inside the metadata JSON, in every alias and shape the old writers
  used (:mod:`sim.ops.old_writers`), some rows without them, some malformed.
* :func:`make_old_timeline_db` writes a ``timeline3.db``-style conversation store
  (:data:`persisters.schema.OLD_TIMELINE_SCHEMA`): conversations with the old
  ``runtime_key`` pointer column, and timeline entities (messages, tool calls, and, for
  the newer writers, recorded profile switches).

Both are views of one simulated history: called with the same ``seed``, ``conversations``
and ``turns`` they describe the same conversations, as one server would have written
them. The history reproduces what the old server really did: late-bound snapshot
runtimes after a switch during an inference, inferences that failed after such a switch,
the ``"turn"`` default turn id, sessions split by eviction, and turn rows purged by a
retention job while their snapshots stayed.

Every expected number in :class:`SampleStats` / :class:`TimelineStats` comes from what the
generator *meant* to write (the runtime it put in a recoverable place, or not), never from
the projection code under test, so tests can compare a migration report with them exactly.
"""

from __future__ import annotations

import os
import random
import sqlite3
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import attrs

from persisters.model import (
    FINAL,
    KEY_SESSION_ID,
    POST_INFERENCE,
    POST_TOOLS,
    PRE_INFERENCE,
    dumps,
)
from persisters.schema import OLD_TIMELINE_SCHEMA, OLD_TURNS_SCHEMA
from sim.ops.old_writers import (
    ERA_WEIGHTS,
    ERAS,
    ERAS_RECORDING_SWITCHES,
    INFERENCE_SHAPES,
    RUNTIME_SHAPES,
)

DEFAULT_SEED = 4
DEFAULT_CONVERSATIONS = 24
DEFAULT_TURNS = 6

#: Profile slug -> runtime key, as the old server's registry resolved them.
PROFILES: dict[str, str] = {
    "inventory": "inventory@v1",
    "planner": "planner@v1",
    "support": "support@v2",
    "research": "research@v1",
}
#: The timeline entity kind the newer old writers used to record a profile switch; its
#: payload names the new runtime under ``runtime_key``.
SWITCH_KIND = "profile_switch"
#: The turn id the old code substituted for an empty one (the default-turn-id bug).
DEFAULT_TURN_ID = "turn"

# 2025-01-06T00:00:00Z: the sample history spans the weeks after it.
_EPOCH_MS = 1_736_121_600_000
_DAY_MS = 86_400_000

_PROMPTS: dict[str, tuple[str, ...]] = {
    "inventory": (
        "How many units of SKU-1042 are left in the Berlin warehouse?",
        "List items below their reorder point.",
        "Move 40 pallets of SKU-7781 from Hamburg to Lyon.",
    ),
    "planner": (
        "Plan the Q3 offsite agenda for twelve people.",
        "Break the warehouse migration into two-week milestones.",
        "What is blocking the Lyon rollout?",
    ),
    "support": (
        "A customer says order 88213 arrived damaged. What now?",
        "Draft a reply about the delayed refund.",
        "Why was ticket 5512 escalated?",
    ),
    "research": (
        "Summarise last quarter's stock-out incidents.",
        "Compare carrier on-time rates for March.",
        "Which suppliers had the longest lead times?",
    ),
}
_TOOLS: dict[str, tuple[str, ...]] = {
    "inventory": ("stock_lookup", "transfer_order"),
    "planner": ("calendar_search", "task_board"),
    "support": ("order_lookup", "ticket_history"),
    "research": ("sql_query", "report_search"),
}


def _rng(seed: int, *names: object) -> random.Random:
    """One independent stream per purpose, derived from the seed plus a name."""
    return random.Random(":".join([str(seed), "samples", *map(str, names)]))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ---------------------------------------------------------------------------------------
# The simulated history.


@attrs.define
class _Row:
    """One row as written, with the values a correct projection must recover."""

    values: tuple[Any, ...]
    runtime_key: str
    inference_id: str
    kind: str  # "ok" | "absent" | "malformed"


@attrs.define
class _Conversation:
    conv_id: str
    era: str
    session_id: str = ""
    pointer: str = ""
    created_at_ms: int = 0
    last_activity_ms: int = 0
    entities: list[tuple[Any, ...]] = attrs.field(factory=list)
    recorded_switch_runtimes: set[str] = attrs.field(factory=set)


@attrs.define
class _World:
    conversations: list[_Conversation] = attrs.field(factory=list)
    turn_rows: dict[tuple[str, str, str], _Row] = attrs.field(factory=dict)
    snapshot_rows: list[_Row] = attrs.field(factory=list)
    late_switch_turns: int = 0
    failed_after_switch_turns: int = 0
    default_turn_id_conversations: int = 0
    evicted_conversations: int = 0


def _blocks(profile: str, prompt: str, upto: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = {"kind": "system", "text": f"You are the {profile} assistant."}
    return [system, {"kind": "user", "text": prompt}, *upto]


def build_world(seed: int, conversations: int, turns: int) -> _World:
    if conversations < 1 or turns < 1:
        raise ValueError("conversations and turns must be >= 1")
    world = _World()
    for index in range(conversations):
        _simulate_conversation(world, seed, index, turns)
    return world


def _simulate_conversation(world: _World, seed: int, index: int, max_turns: int) -> None:
    rng = _rng(seed, "conversation", index)
    era = rng.choices(tuple(ERAS), weights=ERA_WEIGHTS)[0]
    conv = _Conversation(conv_id=_uuid(rng), era=era)
    session_id = _uuid(rng)
    n_turns = rng.randint(1, max_turns)
    default_turn_id = rng.random() < 0.08
    evict_before = rng.randrange(1, n_turns) if n_turns > 2 and rng.random() < 0.2 else None
    purge_first = n_turns >= 2 and rng.random() < 0.1
    profile = rng.choice(tuple(PROFILES))
    now = _EPOCH_MS + rng.randrange(0, 40 * _DAY_MS)
    conv.created_at_ms = now
    world.default_turn_id_conversations += default_turn_id
    world.evicted_conversations += evict_before is not None
    first_turn_key: tuple[str, str, str] | None = None

    def switch(to: str, at: int) -> None:
        nonlocal profile
        previous, profile = PROFILES[profile], to
        if era in ERAS_RECORDING_SWITCHES:
            conv.recorded_switch_runtimes.add(PROFILES[to])
            payload = {"profile": to, "runtime_key": PROFILES[to], "from_runtime_key": previous}
            conv.entities.append((_uuid(rng), 1, SWITCH_KIND, dumps(payload), at))

    for k in range(n_turns):
        trng = _rng(seed, "conversation", index, "turn", k)
        if k and trng.random() < 0.3:
            now += trng.randrange(5_000, 600_000)
            switch(trng.choice([p for p in PROFILES if p != profile]), now)
        if evict_before == k:
            session_id = _uuid(trng)  # evicted while idle, came back under a new session
        now += trng.randrange(60_000, 3 * 3_600_000)
        turn_id = DEFAULT_TURN_ID if default_turn_id else _uuid(trng)
        key = (conv.conv_id, session_id, turn_id)
        first_turn_key = first_turn_key or key
        started_profile = profile
        runtime_at_start = PROFILES[profile]
        inference_id = _uuid(trng)
        rt_shape = RUNTIME_SHAPES[trng.choice(ERAS[era][0])]
        inf_shape = INFERENCE_SHAPES[trng.choice(ERAS[era][1])]
        stale_runtime = PROFILES[trng.choice(tuple(PROFILES))]
        stale_inference = _uuid(trng)
        prompt = trng.choice(_PROMPTS[profile])
        tools = _TOOLS[profile]
        rounds = trng.choice((0, 0, 0, 1, 1, 2))
        phases: list[tuple[str, list[dict[str, Any]]]] = [(PRE_INFERENCE, [])]
        done: list[dict[str, Any]] = []
        for r in range(rounds):
            call = {"kind": "tool_call", "text": "", "data": {"name": tools[r % len(tools)]}}
            done = [*done, call]
            phases.append((POST_INFERENCE, done))
            done = [*done, {"kind": "tool_use", "text": f"result {r + 1}"}]
            phases.append((POST_TOOLS, done))
        done = [*done, {"kind": "llm_text", "text": f"Answer to: {prompt}"}]
        phases.append((POST_INFERENCE, done))
        # A profile switch while this inference runs: the old snapshot hook read the
        # pointer at every phase, so later phases carry the new runtime.
        late_from = trng.randrange(1, len(phases)) if trng.random() < 0.15 else None
        failed = trng.random() < (0.4 if late_from is not None else 0.05)
        if not failed:
            phases.append((FINAL, done))
        saved: list[_Row] = []
        for p, (phase, blocks) in enumerate(phases):
            now += trng.randrange(150, 4_000)
            if late_from is not None and p == late_from:
                switch(trng.choice([q for q in PROFILES if q != profile]), now - 1)
            late = late_from is not None and p >= late_from and phase != FINAL
            runtime = PROFILES[profile] if late else runtime_at_start
            rt_md, rt_clean = rt_shape(runtime, stale_runtime)
            inf_md, inf_clean = inf_shape(inference_id, stale_inference)
            metadata = {KEY_SESSION_ID: session_id, **rt_md, **inf_md}
            turn = {
                "id": turn_id,
                "blocks": _blocks(started_profile, prompt, blocks),
                "metadata": metadata,
                "data": {"usage": {"input_tokens": 40 + 7 * p, "output_tokens": 9 * p}},
            }
            payload, kind = dumps(turn), "ok"
            fault = trng.random()
            if fault < 0.03:  # the writer died mid-write
                payload, kind = payload[: len(payload) // 2], "malformed"
            elif fault < 0.05:  # Go marshals a nil metadata map as null: no metadata
                payload, kind = dumps({**turn, "metadata": None}), "absent"
            expected = (rt_clean, inf_clean) if kind == "ok" else ("", "")
            row = _Row((*key, phase, now, payload), *expected, kind)
            world.snapshot_rows.append(row)
            saved.append(row)
            conv.entities.extend(_timeline_for_phase(trng, phase, prompt, blocks, now, p))
        world.late_switch_turns += late_from is not None
        world.failed_after_switch_turns += late_from is not None and failed
        # The old turns row was upserted on every save: the last save's metadata won.
        # (The row's metadata was written separately, so a broken snapshot payload does not
        # break it; its own faults follow.)
        meta_text, rt, inf, kind = dumps(metadata), rt_clean, inf_clean, "ok"
        fault = trng.random()
        if fault < 0.03:
            meta_text, kind = "null", "malformed"
        elif fault < 0.05:
            meta_text, kind = meta_text[: len(meta_text) // 2], "malformed"
        elif fault < 0.07:
            meta_text, kind = "", "absent"
        if kind != "ok":
            rt = inf = ""
        first_at = world.turn_rows[key].values[3] if key in world.turn_rows else saved[0].values[4]
        data = dumps({"usage": {"input_tokens": 40, "output_tokens": 9 * len(saved)}})
        world.turn_rows[key] = _Row((*key, first_at, meta_text, data, now), rt, inf, kind)
        conv.last_activity_ms = now
    if _rng(seed, "conversation", index, "tail").random() < 0.3:
        # A switch after the last turn: the pointer names a runtime no turn used.
        now += 30_000
        switch(rng.choice([p for p in PROFILES if p != profile]), now)
        conv.last_activity_ms = now
    if purge_first and first_turn_key is not None and first_turn_key in world.turn_rows:
        # A retention job deleted old turn rows and forgot their snapshots.
        del world.turn_rows[first_turn_key]
    conv.session_id = session_id
    # Conversations from before the pointer existed never had one set.
    conv.pointer = "" if era == "v0" and rng.random() < 0.5 else PROFILES[profile]
    world.conversations.append(conv)


def _timeline_for_phase(
    rng: random.Random,
    phase: str,
    prompt: str,
    blocks: list[dict[str, Any]],
    at: int,
    position: int,
) -> list[tuple[Any, ...]]:
    """Timeline entities (entity_id, version, kind, payload, created_at_ms) for one phase."""
    if phase == PRE_INFERENCE:
        return [(_uuid(rng), 1, "message", dumps({"role": "user", "content": prompt}), at)]
    if phase == FINAL or not blocks:
        return []
    last = blocks[-1]
    if last["kind"] == "tool_call":
        payload = {"name": last["data"]["name"], "input": {"step": position}}
        return [(_uuid(rng), 1, "tool_call", dumps(payload), at)]
    if last["kind"] == "tool_use":
        return [(_uuid(rng), 1, "tool_result", dumps({"output": last["text"]}), at)]
    entity = _uuid(rng)
    text = last["text"]
    return [
        (entity, v, "message", dumps({"role": "assistant", "content": text[: 12 * v]}), at + v)
        for v in range(1, 3)
    ] + [(entity, 3, "message", dumps({"role": "assistant", "content": text}), at + 3)]


# ---------------------------------------------------------------------------------------
# Writing the files.


def fresh_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    p = Path(path)
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{p}: already exists; refusing to overwrite a database")
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(f"{p}{extra}").unlink(missing_ok=True)
    if not p.parent.is_dir():
        raise FileNotFoundError(f"{p.parent}: no such directory")
    return p


def write_database(
    path: Path, schema: str, inserts: list[tuple[str, list[tuple[Any, ...]]]]
) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for statement in filter(str.strip, schema.split(";")):
            conn.execute(statement)
        for sql, rows in inserts:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


@attrs.frozen
class SampleStats:
    """What :func:`make_old_turns_db` wrote, and what a correct migration must report.

    ``backfilled``, ``unknown`` and ``malformed`` use the keys of
    :class:`persisters.migration.MigrationReport` (``"turns.runtime_key"``, ...; ``"turns"``,
    ``"turn_snapshots"``) so a test can compare them with a report directly.
    ``expected_turns`` maps each turns row ``(conv_id, session_id, turn_id)`` to the
    ``(runtime_key, inference_id)`` a correct backfill gives it.
    """

    path: str
    seed: int
    conversations: int
    turn_rows: int
    snapshot_rows: int
    backfilled: dict[str, int]
    unknown: dict[str, int]
    malformed: dict[str, int]
    absent_metadata: dict[str, int]
    phase_disagreement_turns: int
    orphan_snapshot_turns: int
    orphan_snapshots: int
    late_switch_turns: int
    failed_after_switch_turns: int
    default_turn_id_conversations: int
    evicted_conversations: int
    expected_turns: dict[tuple[str, str, str], tuple[str, str]] = attrs.field(repr=False)
    layout: str = "turnsim"

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self, filter=lambda a, _: a.name != "expected_turns")
        return out


@attrs.frozen
class TimelineStats:
    """What :func:`make_old_timeline_db` wrote.

    ``pointer_verdicts`` tells, per conversation with a non-empty pointer, what
    ``turnsim db doctor`` must conclude about that pointer on a store that holds both this
    file's conversations and timeline entities and the companion ``turns.db``'s turns
    (same seed and sizes): ``"used by a turn"``, ``"explained by a recorded switch"``,
    ``"unexplained"`` or ``"no turns in this file"``.
    """

    path: str
    seed: int
    conversations: int
    pointers_set: int
    pointers_empty: int
    entities: int
    switch_entities: int
    pointer_verdicts: dict[str, str] = attrs.field(repr=False)
    layout: str = "turnsim"

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self, filter=lambda a, _: a.name != "pointer_verdicts")
        out["pointer_verdict_counts"] = dict(
            sorted(Counter(self.pointer_verdicts.values()).items())
        )
        return out


def make_old_turns_db(
    path: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    conversations: int = DEFAULT_CONVERSATIONS,
    turns: int = DEFAULT_TURNS,
    overwrite: bool = False,
) -> SampleStats:
    """Write a ``turns.db``-style old turn store at ``path`` and say what it holds.

    ``turns`` is the most turns a conversation has (each has 1..``turns``). The same
    arguments always produce the same file contents. Refuses an existing ``path`` unless
    ``overwrite`` (then the file and its ``-wal``/``-shm``/``-journal`` are replaced).
    """
    p = fresh_path(path, overwrite)
    world = build_world(seed, conversations, turns)
    turn_rows = list(world.turn_rows.values())
    snapshots = world.snapshot_rows
    write_database(
        p,
        OLD_TURNS_SCHEMA,
        [
            (
                "INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, "
                "turn_metadata_json, turn_data_json, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [r.values for r in turn_rows],
            ),
            (
                "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, "
                "payload) VALUES (?, ?, ?, ?, ?, ?)",
                [r.values for r in snapshots],
            ),
        ],
    )
    runtimes_by_turn: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in snapshots:
        if r.runtime_key:
            runtimes_by_turn[r.values[:3]].add(r.runtime_key)
    orphan_keys = {r.values[:3] for r in snapshots} - set(world.turn_rows)
    tables = {"turns": turn_rows, "turn_snapshots": snapshots}
    return SampleStats(
        path=os.fspath(p),
        seed=seed,
        conversations=conversations,
        turn_rows=len(turn_rows),
        snapshot_rows=len(snapshots),
        backfilled={
            f"{t}.{c}": sum(bool(getattr(r, c)) for r in rows)
            for t, rows in tables.items()
            for c in ("runtime_key", "inference_id")
        },
        unknown={
            f"{t}.{c}": sum(not getattr(r, c) for r in rows)
            for t, rows in tables.items()
            for c in ("runtime_key", "inference_id")
        },
        malformed={t: sum(r.kind == "malformed" for r in rows) for t, rows in tables.items()},
        absent_metadata={t: sum(r.kind == "absent" for r in rows) for t, rows in tables.items()},
        phase_disagreement_turns=sum(len(v) > 1 for v in runtimes_by_turn.values()),
        orphan_snapshot_turns=len(orphan_keys),
        orphan_snapshots=sum(r.values[:3] in orphan_keys for r in snapshots),
        late_switch_turns=world.late_switch_turns,
        failed_after_switch_turns=world.failed_after_switch_turns,
        default_turn_id_conversations=world.default_turn_id_conversations,
        evicted_conversations=world.evicted_conversations,
        expected_turns={k: (r.runtime_key, r.inference_id) for k, r in world.turn_rows.items()},
    )


def make_old_timeline_db(
    path: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    conversations: int = DEFAULT_CONVERSATIONS,
    turns: int = DEFAULT_TURNS,
    overwrite: bool = False,
) -> TimelineStats:
    """Write a ``timeline3.db``-style old conversation store at ``path``.

    It describes the same conversations as :func:`make_old_turns_db` with the same
    arguments. Deterministic; refuses an existing ``path`` unless ``overwrite``.
    """
    p = fresh_path(path, overwrite)
    world = build_world(seed, conversations, turns)
    conv_rows = [
        (c.conv_id, c.session_id, c.pointer, c.created_at_ms, c.last_activity_ms)
        for c in world.conversations
    ]
    entity_rows = [(c.conv_id, *e) for c in world.conversations for e in c.entities]
    write_database(
        p,
        OLD_TIMELINE_SCHEMA,
        [
            (
                "INSERT INTO conversations (conv_id, session_id, runtime_key, created_at_ms, "
                "last_activity_ms) VALUES (?, ?, ?, ?, ?)",
                conv_rows,
            ),
            (
                "INSERT INTO timeline_entities (conv_id, entity_id, version, kind, payload_json, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                entity_rows,
            ),
        ],
    )
    used: dict[str, set[str]] = defaultdict(set)
    has_turns: set[str] = set()
    for (conv_id, _, _), row in world.turn_rows.items():
        has_turns.add(conv_id)
        if row.runtime_key:
            used[conv_id].add(row.runtime_key)
    verdicts: dict[str, str] = {}
    for c in world.conversations:
        if not c.pointer:
            continue
        if c.conv_id not in has_turns:
            verdicts[c.conv_id] = "no turns in this file"
        elif c.pointer in used[c.conv_id]:
            verdicts[c.conv_id] = "used by a turn"
        elif c.pointer in c.recorded_switch_runtimes:
            verdicts[c.conv_id] = "explained by a recorded switch"
        else:
            verdicts[c.conv_id] = "unexplained"
    return TimelineStats(
        path=os.fspath(p),
        seed=seed,
        conversations=len(conv_rows),
        pointers_set=sum(bool(c.pointer) for c in world.conversations),
        pointers_empty=sum(not c.pointer for c in world.conversations),
        entities=len(entity_rows),
        switch_entities=sum(e[3] == SWITCH_KIND for e in entity_rows),
        pointer_verdicts=verdicts,
    )


def make_samples(
    directory: str | os.PathLike[str],
    *,
    seed: int = DEFAULT_SEED,
    conversations: int = DEFAULT_CONVERSATIONS,
    turns: int = DEFAULT_TURNS,
    overwrite: bool = False,
) -> tuple[SampleStats, TimelineStats]:
    """Write ``turns.db`` and ``timeline3.db`` (one history) into ``directory``.

    Creates ``directory`` if needed. Refuses to replace either file unless ``overwrite``;
    checks both before writing either.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d}: exists and is not a directory")
    targets = (d / "turns.db", d / "timeline3.db")
    if not overwrite:
        for t in targets:
            if t.exists() or t.is_symlink():
                raise FileExistsError(f"{t}: already exists; refusing to overwrite a database")
    d.mkdir(parents=True, exist_ok=True)
    size = {"seed": seed, "conversations": conversations, "turns": turns, "overwrite": overwrite}
    return make_old_turns_db(targets[0], **size), make_old_timeline_db(targets[1], **size)
