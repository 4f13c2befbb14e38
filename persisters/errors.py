"""The project's exceptions. Each message says what, where, and how to fix it."""

from __future__ import annotations

#: What every write raises once its store was made read-only (``make_read_only``, the
#: fault a scenario injects): the same words on every store, so that a run's log does not
#: depend on the store it ran on. "readonly" is SQLite's word, which scenarios match.
READ_ONLY_REFUSAL = "write refused: the store is read-only (attempt to write a readonly database)"


#: In the message of a rewrite the database's write-once trigger refused (see
#: :mod:`persisters.write_once`): the store's own policy let it through, which is a bug of
#: the writer even though the file kept its history.
TRIGGER_REFUSAL = "refused by the database's write-once trigger, not by the store's policy"


class TurnsimError(Exception):
    """Base of every error turnsim raises on purpose."""


class StoreError(TurnsimError):
    """A store operation failed."""


class TransientStoreError(StoreError):
    """A store operation failed in a way that may succeed when retried."""


class PermanentStoreError(StoreError):
    """A store operation failed and retrying will not help."""


class TurnRewriteError(PermanentStoreError):
    """A save tried to change a turn's recorded runtime key or inference id (rule 4)."""

    def __init__(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        field: str,
        stored: str,
        attempted: str,
        *,
        by_trigger: bool = False,
    ) -> None:
        self.conv_id = conv_id
        self.session_id = session_id
        self.turn_id = turn_id
        self.field = field
        self.stored = stored
        self.attempted = attempted
        #: True when the database's write-once trigger refused it, not the store's policy.
        self.by_trigger = by_trigger
        by = f" ({TRIGGER_REFUSAL})" if by_trigger else ""
        super().__init__(
            f"refused to rewrite {field} of turn {conv_id}/{session_id}/{turn_id}: stored "
            f"{stored!r}, save carried {attempted!r}{by}; earlier turns are never rewritten "
            f"(save under a new turn id, or pass the stored value)"
        )


class EmptyRuntimeError(PermanentStoreError):
    """A new turn would be stored without a runtime key (rule 8)."""


class InvalidSaveError(PermanentStoreError):
    """A save's arguments are unusable (empty turn id, unknown phase, ...)."""


class SchemaError(StoreError):
    """The database's schema is not usable as it is (e.g. needs `turnsim db migrate`)."""


class NotSQLiteError(StoreError):
    """The file is missing, not a SQLite database, or cannot be opened."""
