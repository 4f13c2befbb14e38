"""A store written outside the package, checked by the conformance kit as its author would.

``tests/outside_store.py`` is a user's store; this module is what its test suite looks
like with the kit: import the suite, give ``turnsim_store_factory``. The broken store
beside it is shown to fail exactly the write-once rule's checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from persisters.contract import CHECKS, run_check
from persisters.testing import *  # noqa: F403 - the contract suite: every check is a test
from tests.outside_store import JournalStore, forgetful_store, journal_store


@pytest.fixture
def turnsim_store_factory() -> Callable[..., Any]:
    return journal_store


async def _outcomes(factory: Callable[..., Any]) -> list[Any]:
    return [await run_check(c, factory, case) for c in CHECKS for case in (c.cases or (None,))]


@pytest.mark.anyio
async def test_the_kit_catches_a_store_that_rewrites_turns() -> None:
    outcomes = await _outcomes(forgetful_store)
    broken = {o.rule for o in outcomes if o.status == "failed"}
    assert "write-once" in broken
    assert broken <= {"write-once", "pointer", "concurrency"}  # the rewrite, seen three ways
    failed = [o for o in outcomes if o.status == "failed"]
    assert any("did not raise TurnRewriteError" in o.message for o in failed)
    assert all(".py:" in o.message for o in failed)  # each names the check's line


@pytest.mark.anyio
async def test_a_factory_without_on_conflict_skips_only_the_policy_check() -> None:
    from persisters.store import refuse_rewrite

    def only_write_once() -> JournalStore:
        return JournalStore(refuse_rewrite)

    outcomes = await _outcomes(only_write_once)
    skipped = {o.check for o in outcomes if o.status == "skipped"}
    assert "upsert_overwrite_policy_does_overwrite" in skipped
    assert not [o for o in outcomes if o.status == "failed"]
