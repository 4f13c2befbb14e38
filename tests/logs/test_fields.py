"""sim.logs.fields: a field of the wrong type reads as the neutral value, never raises."""

from __future__ import annotations

from sim.logs.fields import LEVEL_RANK, int_of, seq_of, text_of, time_of


def test_fields_of_the_expected_type_are_returned() -> None:
    event = {"event": "a.b", "seq": 3, "t_ms": 0, "conv_id": "c1"}
    assert (text_of(event["conv_id"]), seq_of(event), time_of(event)) == ("c1", 3, 0)
    assert int_of(-2) == -2


def test_fields_of_another_type_read_as_neutral() -> None:
    for odd in (None, True, 1.5, [1], {"a": 1}):
        assert text_of(odd) == ""
        assert int_of(odd) == 0
        assert time_of({"t_ms": odd}) is None
        assert seq_of({"seq": odd}) == 0
    assert text_of(7) == "" and time_of({}) is None and seq_of({}) == 0


def test_levels_rank_in_order_of_concern() -> None:
    ordered = ["debug", "info", "warning", "error", "critical"]
    assert sorted(LEVEL_RANK, key=LEVEL_RANK.__getitem__) == ordered
