"""The TurnStore contract as executable checks: the conformance kit's suite.

Every clause of :mod:`persisters.store`'s docstrings that a store can be tested on is a
check here, registered under one rule of :data:`RULES` (write-once, empty-runtime refusal,
append-only snapshots, the pointer kept apart from history, filters and ordering,
concurrency, ...). Checks are plain coroutines over a store factory and need no test
framework:

* ``persisters.testing`` makes each check a pytest test (the kit a user imports);
* ``turnsim conformance SPEC`` runs them with :func:`run_check` and prints a table.

Modules: ``base`` (the machinery and helpers), ``writes``, ``reads``, ``index``,
``behaviour`` (Protocol, concurrency, group commit, the read-only fault).
"""

from __future__ import annotations

from persisters.contract import behaviour, index, reads, writes
from persisters.contract.base import (
    CHECKS,
    RULES,
    Check,
    Outcome,
    Skip,
    StoreMaker,
    run_check,
    store_maker,
)

#: The check modules, in the order their checks run.
MODULES = (behaviour, writes, reads, index)

__all__ = [
    "CHECKS",
    "MODULES",
    "RULES",
    "Check",
    "Outcome",
    "Skip",
    "StoreMaker",
    "run_check",
    "store_maker",
]
