"""The conformance kit for pytest: turnsim's TurnStore contract suite, run on your store.

As a SQLAlchemy dialect runs ``sqlalchemy.testing.suite``, a store of your own runs the
whole contract from *your* test suite by importing it and giving one fixture::

    # tests/test_my_store_contract.py
    import pytest
    from persisters.testing import *  # noqa: F403  (the suite's tests and fixtures)

    @pytest.fixture
    def turnsim_store_factory(tmp_path):
        names = iter(range(1_000_000))

        def factory(on_conflict):          # called once per fresh store a check needs
            return MyTurnStore.open(tmp_path / f"{next(names)}.db", on_conflict=on_conflict)

        return factory

``turnsim_store_factory`` returns a callable that makes a fresh, empty store (or an
awaitable of one); every store it made is closed after its test. Give the callable an
``on_conflict`` parameter (a :data:`persisters.store.ConflictPolicy`) to have the
``upsert-overwrite`` bug variant's check run too; without it, that check is skipped.
Each check is one test named ``test_<check>``, with cases as parameters; define the
``anyio_backend`` fixture (params ``asyncio`` and ``trio``) to run them on both backends.
``turnsim conformance module:factory`` runs the same checks without pytest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

# Before the checks are imported: their plain asserts then fail with pytest's diff.
pytest.register_assert_rewrite("persisters.contract")

from persisters.contract import CHECKS, Check, Skip, StoreMaker, store_maker  # noqa: E402


@pytest.fixture
async def turnsim_make_store(
    turnsim_store_factory: Callable[..., Any],
) -> AsyncIterator[StoreMaker]:
    """The checks' store maker over your ``turnsim_store_factory``; closes what it made."""
    async with store_maker(turnsim_store_factory) as make:
        yield make


def _as_test(check: Check) -> Callable[..., Any]:
    if check.cases:

        async def test(turnsim_make_store: StoreMaker, case: Any) -> None:
            try:
                await check.fn(turnsim_make_store, case)
            except Skip as exc:
                pytest.skip(str(exc))

        test = pytest.mark.parametrize(
            "case", [c[1] for c in check.cases], ids=[c[0] for c in check.cases]
        )(test)
    else:

        async def test(turnsim_make_store: StoreMaker) -> None:  # type: ignore[misc]
            try:
                await check.fn(turnsim_make_store)
            except Skip as exc:
                pytest.skip(str(exc))

    test.__name__ = test.__qualname__ = f"test_{check.name}"
    test.__doc__ = f"[{check.rule}] {check.doc}"
    return pytest.mark.anyio(test)


for _check in CHECKS:
    globals()[f"test_{_check.name}"] = _as_test(_check)

__all__ = ["turnsim_make_store", *(f"test_{c.name}" for c in CHECKS)]
