"""The event catalogue: every event turnsim's history holds, as data.

One :class:`EventSpec` per event (name, level, meaning), in catalogue order, and the groups
that checkers and readers select by (:data:`SAVED`, :data:`SAVE_FAILED`, :data:`RETRIED`,
...). The recorder refuses a name that is not here, the invariant checkers and the log
reader select by these groups, and ``docs/logs.md`` documents exactly this list (a test
holds the three together).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class EventSpec:
    """One catalogue entry: its name, the level it is logged at, what it means."""

    name: str
    level: str  # "info" or "warning": what a reader should notice
    meaning: str


def _info(name: str, meaning: str) -> EventSpec:
    return EventSpec(name, "info", meaning)


def _warning(name: str, meaning: str) -> EventSpec:
    return EventSpec(name, "warning", meaning)


#: Every event, in catalogue order (the order docs/logs.md and `turnsim logs --summary` use).
EVENTS: tuple[EventSpec, ...] = (
    _info("scenario.started", "a scenario run began (file, variants)"),
    _info("scenario.finished", "a scenario run ended (result, counts)"),
    _info("step.started", "the director began a scenario step"),
    _info("race.checked", "an expect_race step counted the hits of its race window so far"),
    _info("conversation.started", "a conversation actor started (or restarted) with its profile"),
    _info("conversation.stopped", "a conversation actor stopped"),
    _warning("conversation.crashed", "a conversation actor crashed; its supervisor decides"),
    _info("conversation.restarted", "a supervisor restarted a crashed actor from the store"),
    _warning(
        "server.stopped",
        "the server process died (a cold restart): in-flight inferences interrupted, queued "
        "prompts lost",
    ),
    _info("server.started", "the server process booted again; its conversations reopen"),
    _info("turn.recovered", "a boot gave a turn its restart interrupted its final save"),
    _info("schedule.fired", "a scheduled event (a reminder) reached its conversation"),
    _info("profile.switched", "the conversation's current runtime pointer changed"),
    _warning("profile.switch_refused", "a switch named a profile the registry does not know"),
    _info("profile.updated", "a profile's runtime got a new version (same slug)"),
    _info("prompt.queued", "a prompt entered the conversation's queue"),
    _info("inference.started", "an inference began; its runtime is bound here"),
    _warning(
        "inference.refused",
        "an inference could not start (no runtime, or its history could not be loaded)",
    ),
    _info("inference.cancel_requested", "a cancellation of the in-flight inference was requested"),
    _info("inference.finished", "an inference ended (completed, failed or cancelled)"),
    _info("snapshot.saved", "the snapshot hook stored a phase snapshot"),
    _info("snapshot.save_retry", "a snapshot save failed transiently and will be retried"),
    _warning("snapshot.save_failed", "a snapshot save failed for good; surfaced as a failure"),
    _warning(
        "snapshot.save_error_swallowed",
        "a snapshot save failed and was only logged (bug variant)",
    ),
    _warning(
        "history.load_error_ignored",
        "a history load failed and the inference ran without one (bug variant)",
    ),
    _info("turn.persisted", "the final persister stored the finished turn"),
    _info("turn.persist_retry", "a final save failed transiently and will be retried"),
    _warning("turn.persist_failed", "a final save failed for good; surfaced as a failure"),
    _warning("conversation.index_save_failed", "a conversation index write failed; surfaced"),
    _info("turn.resaved", "a second writer re-saved an existing turn"),
    _warning("turn.resave_refused", "the store refused a second writer's conflicting save"),
    _info("turn.cli_saved", "the command-line persister saved a turn the pipelines never saw"),
    _warning("turn.cli_save_refused", "the command-line persister's save failed or was refused"),
    _info("fault.injected", "a named fault point fired"),
    _warning("expectation.failed", "an expect_* step did not hold"),
    _warning("invariant.violated", "an invariant checker found a violation"),
)

#: Name -> spec, in catalogue order.
CATALOGUE: dict[str, EventSpec] = {spec.name: spec for spec in EVENTS}

# -- groups: what checkers and readers select by ------------------------------------------

#: A pipeline stored a snapshot or a final turn.
PIPELINE_SAVED: tuple[str, ...] = ("snapshot.saved", "turn.persisted")
#: Any stored save, the other writers' (second and first) included.
SAVED: tuple[str, ...] = (*PIPELINE_SAVED, "turn.resaved", "turn.cli_saved")
#: A pipeline save failed for good and the failure was surfaced.
SAVE_FAILED: tuple[str, ...] = ("snapshot.save_failed", "turn.persist_failed")
#: A save failed for good, surfaced or not (the swallowing bug variant's event included).
SAVE_LOST: tuple[str, ...] = (*SAVE_FAILED, "snapshot.save_error_swallowed")
#: A save failed transiently and will be retried.
RETRIED: tuple[str, ...] = ("snapshot.save_retry", "turn.persist_retry")

#: Context fields an event may carry, in the order the console renderer shows them.
CONTEXT_FIELDS: tuple[str, ...] = (
    "conv_id",
    "session_id",
    "turn",
    "turn_id",
    "phase",
    "runtime_key",
    "inference_id",
    "profile",
)


def level_of(name: str) -> str:
    """The level an event is logged at (``info`` for a name not in the catalogue)."""
    spec = CATALOGUE.get(name)
    return spec.level if spec else "info"
