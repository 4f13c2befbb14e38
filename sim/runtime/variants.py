"""Bug variants: the real system's bugs, re-introduced by name, one substitution each.

The default build has none. Each variant swaps one stage of a pipeline (or its guard and
outcome, for ``final-on-success-only``), one store policy, or one read path, so the
invariant checkers can be shown to catch a real bug.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from persisters.pipeline import (
    Pipeline,
    bound_runtime,
    completed_only,
    default_turn_id,
    drop_failure,
    final_persister,
    late_bound_runtime,
    require_turn_id,
    snapshot_hook,
    surface_failure,
    swallow_failure,
)
from persisters.readpath import PointerAsHistoryReadPath, ReadPath
from persisters.store import ConflictPolicy, new_value_wins, refuse_rewrite

#: name -> one-line description (what the real system did).
VARIANTS: dict[str, str] = {
    "late-snapshot-runtime": (
        "the snapshot hook reads the conversation's current runtime at every phase instead of "
        "the runtime bound at inference start (stage bound_runtime -> late_bound_runtime)"
    ),
    "upsert-overwrite": (
        "the store upserts turn rows with 'a new non-empty runtime wins', so a later save "
        "rewrites an earlier turn (policy refuse_rewrite -> new_value_wins)"
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


@attrs.frozen
class Build:
    """The runtime as assembled for one run: pipelines, store policy, read path."""

    variants: tuple[str, ...]
    snapshot_hook: Pipeline
    final_persister: Pipeline
    on_conflict: ConflictPolicy
    read_path: ReadPath
    mint_turn_ids: bool


def parse_variants(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Variant names from ``"a+b"``, ``"a,b"`` or a list; validated, sorted, de-duplicated."""
    if spec is None:
        return ()
    names = spec.replace(",", "+").split("+") if isinstance(spec, str) else list(spec)
    out = set()
    for name in (n.strip() for n in names):
        if not name or name == "none":
            continue
        if name not in VARIANTS:
            raise UnknownVariantError(
                f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)} "
                "(combine with '+')"
            )
        out.add(name)
    return tuple(sorted(out))


def build(variants: Iterable[str] = ()) -> Build:
    """Assemble the runtime with the named bug variants re-introduced (none by default)."""
    chosen = parse_variants(list(variants))
    turn_id = default_turn_id if "default-turn-id" in chosen else require_turn_id
    hook = snapshot_hook(
        runtime=late_bound_runtime if "late-snapshot-runtime" in chosen else bound_runtime,
        turn_id=turn_id,
        on_failed=swallow_failure if "swallow-snapshot-errors" in chosen else surface_failure,
    )
    return Build(
        variants=chosen,
        snapshot_hook=hook,
        final_persister=final_persister(
            turn_id=turn_id,
            **(
                {"runs": completed_only, "on_failed": drop_failure}
                if "final-on-success-only" in chosen
                else {}
            ),
        ),
        on_conflict=new_value_wins if "upsert-overwrite" in chosen else refuse_rewrite,
        read_path=PointerAsHistoryReadPath() if "pointer-as-history" in chosen else ReadPath(),
        mint_turn_ids="default-turn-id" not in chosen,
    )
