"""Reading turns back for reports (debug API, checkers, CLI).

Every place that reports a turn's runtime goes through :class:`ReadPath`, so the one
rule lives in one place: a turn's runtime is the runtime stored with that turn, never the
conversation's current pointer (rule 2). The ``pointer-as-history`` bug variant swaps in
:class:`PointerAsHistoryReadPath`, which reproduces the old debug responses.
"""

from __future__ import annotations

import attrs

from persisters.model import ConversationRecord, TurnSnapshot


class ReadPath:
    """How reports derive the runtime of a stored snapshot: from the snapshot itself."""

    name = "per-turn"

    def snapshot_runtime(
        self, snapshot: TurnSnapshot, conversation: ConversationRecord | None
    ) -> str:
        return snapshot.runtime_key

    def view(self, snapshot: TurnSnapshot, conversation: ConversationRecord | None) -> TurnSnapshot:
        """The snapshot as reports show it."""
        runtime = self.snapshot_runtime(snapshot, conversation)
        if runtime == snapshot.runtime_key:
            return snapshot
        return attrs.evolve(snapshot, runtime_key=runtime)


class PointerAsHistoryReadPath(ReadPath):
    """BUG VARIANT ``pointer-as-history``: every turn reports the conversation's pointer."""

    name = "pointer-as-history"

    def snapshot_runtime(
        self, snapshot: TurnSnapshot, conversation: ConversationRecord | None
    ) -> str:
        if conversation is None:
            return snapshot.runtime_key
        return conversation.current_runtime_key
