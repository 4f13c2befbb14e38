"""What an exploration found, as values: grouping, shards, the report round trip, and the
failure database (the CLI's use of them is in tests/cli/test_explore_at_scale.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.scenario.exploration import Exploration, SeedFailure, Shard, group_failures
from sim.scenario.failure_db import FailureDatabase
from sim.scenario.result import Failure
from sim.scenario.shrink import ShrinkResult, Size

SWITCH = "s.yaml:9 (switch_profile)"
RESAVE = "s.yaml:12 (resave)"


def seed(n: int, *names: str, where: str = SWITCH) -> SeedFailure:
    failures = tuple(
        Failure("invariant", name, f"{name} broke", step=3, where=where) for name in names
    )
    return SeedFailure(n, failures, f"turnsim run s.yaml --seed {n}")


def example(of: SeedFailure, shape: str) -> ShrinkResult:
    size = Size(1, 1, 2)
    return ShrinkResult(
        group=of.first_violation,
        source="s.yaml",
        variants=(),
        original_seed=of.seed,
        seed=of.seed,
        original_size=Size(2, 6, 16),
        size=size,
        path=f"out/{of.seed}.yaml",
        text="name: s\n",
        runs=10,
        failures=of.failures,
        shape=shape,
    )


def test_a_seed_is_in_one_group_whatever_it_violates() -> None:
    failed = [seed(4, "a", "b"), seed(1, "a"), seed(2, "a", "c")]
    (group,) = group_failures(failed, {})
    assert group.first_violation == "a" and group.causes == ("a @ switch_profile",)
    assert [f.seed for f in group.seeds] == [1, 2, 4]


def test_causes_that_shrink_to_one_scenario_are_one_group() -> None:
    by_switch, by_resave = seed(1, "a"), seed(3, "a", where=RESAVE)
    examples = {by_switch.cause: example(by_switch, "X"), by_resave.cause: example(by_resave, "X")}
    (group,) = group_failures([by_resave, by_switch, seed(5, "a")], examples)
    assert group.causes == ("a @ switch_profile", "a @ resave")
    assert group.example is examples[by_switch.cause]  # the first seed's
    assert [f.seed for f in group.seeds] == [1, 3, 5]


def test_other_shapes_or_other_first_violations_are_other_groups() -> None:
    one, two, three = seed(2, "a"), seed(1, "a", where=RESAVE), seed(0, "b", where=RESAVE)
    examples = {one.cause: example(one, "X"), two.cause: example(two, "Y")}
    groups = group_failures([one, two, three], examples)
    assert [(g.first_violation, g.first.seed) for g in groups] == [("b", 0), ("a", 1), ("a", 2)]
    assert groups[0].example is None  # not shrunk: a group of its own cause


def test_an_exploration_reads_back_what_it_wrote() -> None:
    found = Exploration("s", "s.yaml", "abc", ("v",), range(10, 20), replayed=(3,))
    found.failed = [seed(3, "a"), seed(12, "a", "b")]
    found.examples = {found.failed[0].cause: example(found.failed[0], "X")}
    found.runs, found.turns, found.switches = 11, 40, 9
    again = Exploration.from_json(found.to_json())
    assert again.to_json() == found.to_json()
    assert again.complete and again.planned == 11


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_split_the_seeds_exactly(count: int) -> None:
    seeds = range(5, 22)
    shards = [Shard(k, count) for k in range(1, count + 1)]
    covered = [s for shard in shards for s in shard.part(seeds)]
    assert covered == list(seeds)
    for outside in (0, 1, 2, 100, 101):  # remembered seeds outside the range: one owner each
        assert sum(shard.owns(outside, seeds) for shard in shards) == 1
    assert sum(shard.owns(9, seeds) for shard in shards) == 1


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", "-1/2"])
def test_a_shard_must_be_k_of_n(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        Shard.parse(text)
    assert Shard.parse(" 2 / 3 ") == Shard(2, 3)


def test_the_failure_database_remembers_per_scenario_and_variants(tmp_path: Path) -> None:
    db = FailureDatabase(tmp_path / "db")
    assert db.seeds("s", ()) == []  # nothing yet, and no folder made for reading
    assert not (tmp_path / "db").exists()
    db.save("s", (), 12, "a   broke\nover lines")
    db.save("s", (), 3, "b")
    db.save("s", ("late-snapshot-runtime",), 7, "c")
    db.save("odd name/..", (), 1, "d")
    assert db.seeds("s", ()) == [3, 12]
    assert db.seeds("s", ("late-snapshot-runtime",)) == [7]
    assert db.seeds("odd name/..", ()) == [1]
    assert (tmp_path / "db" / "s" / "default" / "12").read_text() == "a broke over lines\n"
    (tmp_path / "db" / "s" / "default" / "junk").write_text("x")
    db.delete("s", (), 12)
    db.delete("s", (), 99)  # never remembered: fine
    assert db.seeds("s", ()) == [3]
