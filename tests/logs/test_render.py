"""sim.logs.render at the library level: colours and wrapping only through the Screen,
every value escaped, a run header before each run of the line view. (What the views say is
tested through ``turnsim logs`` in test_logs.py.)"""

from __future__ import annotations

import io

from sim.logs.render import Screen, event_line, event_lines, plain


def _screen(**kwargs: object) -> tuple[Screen, io.StringIO]:
    out = io.StringIO()
    return Screen(out, **kwargs), out  # type: ignore[arg-type]


def test_the_screen_colours_only_when_asked() -> None:
    segments = [("a", "red bold"), ("b", ""), ("", "red")]
    screen, out = _screen(color=False)
    screen.write(segments)
    assert out.getvalue() == "ab\n"
    screen, out = _screen(color=True)
    screen.write(segments)
    assert out.getvalue() == "\x1b[1;31ma\x1b[0mb\n"


def test_a_long_line_wraps_under_its_text_not_its_margin() -> None:
    words = " ".join(f"word{i}" for i in range(30))
    screen, out = _screen(color=False, width=40)
    screen.write([("  t=100ms", "dim"), ("      ", ""), (words, "")])
    lines = out.getvalue().splitlines()
    assert len(lines) > 3 and all(len(line) <= 40 for line in lines)
    assert lines[0].startswith("  t=100ms      word0 ")
    assert all(line.startswith(" " * 15 + "word") for line in lines[1:])
    assert all(line == line.rstrip() for line in lines)
    assert " ".join(" ".join(line.split()) for line in lines).endswith(words)


def test_without_a_width_a_line_stays_whole() -> None:
    words = " ".join(f"word{i}" for i in range(60))
    for color in (False, True):
        screen, out = _screen(color=color)
        screen.write([("x ", ""), (words, "bold")])
        assert len(out.getvalue().splitlines()) == 1


def test_control_and_bidi_characters_are_shown_escaped() -> None:
    hostile = "evil\x1b[2J\x00name\u202egnp.exe\nnext"
    for kwargs in ({"color": False}, {"color": True}, {"color": False, "width": 60}):
        screen, out = _screen(**kwargs)
        screen.write([("turn ", "bold"), (hostile, "red")])
        text = out.getvalue()
        assert "\x00" not in text and "\u202e" not in text and text.count("\n") == 1
        assert "evil\\x1b[2J\\x00name\\u202egnp.exe\\nnext" in text
        assert "\x1b[2J" not in text
    assert plain([(hostile, "")]) == "evil\\x1b[2J\\x00name\\u202egnp.exe\\nnext"


def test_the_line_view_starts_each_run_with_a_header() -> None:
    events = [
        {"event": "scenario.started", "scenario": "one", "seed": 1, "seq": 1, "t_ms": 0},
        {"event": "step.started", "scenario": "one", "seed": 1, "seq": 2, "t_ms": 0},
        {"event": "scenario.started", "scenario": "one", "seed": 2, "seq": 1, "t_ms": 0},
    ]
    lines = [plain(s) for s in event_lines(events)]
    shown = [plain(event_line(e)) for e in events]
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
    text = plain(event_line(event))
    seq, t, name, *fields = text.split()
    assert (seq, t, name) == ("12", "t=300ms", "snapshot.saved")
    assert fields[:3] == ["conv_id=s.c1", "turn_id=01234567", "runtime_key=planner@v1"]
    assert "level=" not in text  # level, seq, t_ms, scenario and seed have their place
    assert text.endswith(' note="two words" zeta=last')
