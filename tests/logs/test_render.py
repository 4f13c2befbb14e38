"""sim.logs.render at the library level: colours only through the Painter, a run header
before each run of the line view. (What the views say is tested through ``turnsim logs``
in test_logs.py.)"""

from __future__ import annotations

from sim.logs.render import Painter, event_line, event_lines


def test_the_painter_colours_only_when_asked() -> None:
    segments = [("a", "red bold"), ("b", ""), ("", "red")]
    assert Painter(color=False).line(segments) == "ab"
    assert Painter(color=True).line(segments) == "\x1b[31;1ma\x1b[0mb"


def test_the_line_view_starts_each_run_with_a_header() -> None:
    events = [
        {"event": "scenario.started", "scenario": "one", "seed": 1, "seq": 1, "t_ms": 0},
        {"event": "step.started", "scenario": "one", "seed": 1, "seq": 2, "t_ms": 0},
        {"event": "scenario.started", "scenario": "one", "seed": 2, "seq": 1, "t_ms": 0},
    ]
    painter = Painter(color=False)
    lines = [painter.line(s) for s in event_lines(events)]
    shown = [painter.line(event_line(e)) for e in events]
    assert lines == ["== one · seed 1", *shown[:2], "== one · seed 2", shown[2]]


def test_an_event_line_shows_context_first_and_shortens_ids() -> None:
    event = {
        "event": "snapshot.saved",
        "seq": 12,
        "t_ms": 300,
        "level": "info",
        "zeta": "last",
        "runtime_key": "planner@v1",
        "conv_id": "s.c1",
        "turn_id": "0123456789abcdef",
        "note": "two words",
    }
    text = Painter(color=False).line(event_line(event))
    seq, t, name, *fields = text.split()
    assert (seq, t, name) == ("12", "t=300ms", "snapshot.saved")
    assert fields[:3] == ["conv_id=s.c1", "turn_id=01234567", "runtime_key=planner@v1"]
    assert "level=" not in text  # level, seq, t_ms, scenario and seed have their place
    assert text.endswith(' note="two words" zeta=last')
