"""Drawing lines of styled text on a terminal, a pipe or a file.

A line is a list of :data:`Segment` s; :class:`Screen` prints it with rich's styles, wrapped
at a width with a hanging indent when one is set. Every text is escaped by
:func:`sim.printable.printable` on the way out. :mod:`sim.logs.render` decides what the
lines say.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import IO

from rich.cells import cell_len
from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.text import Text

from sim.printable import printable

#: Narrowest text column a wrapped line keeps beside its margin.
_MIN_ROOM = 24

Segment = tuple[str, str]  # (text, style: rich style words such as "red bold", or "")


def plain(segments: Iterable[Segment]) -> str:
    """A line's text without styles, every value escaped (:func:`sim.printable.printable`)."""
    return printable("".join(text for text, _ in segments))


def _margin(segments: Sequence[Segment]) -> int:
    """How many segments form the line's margin: through the first blank one among the
    first three (a timeline entry: time, indent), else none."""
    for i, (text, _) in enumerate(segments[:3]):
        if text and not text.strip():
            return i + 1
    return 0


class Screen:
    """Writes lines of styled segments to a stream; rich draws the colours and the wrapping.

    ``width`` wraps each line at that many columns with a hanging indent (continuation
    lines start under the text after the line's margin: a timeline entry's text stays
    clear of its time column); ``None`` never wraps (a pipe, a file: lines stay whole
    and greppable). Every segment's text goes through :func:`sim.printable.printable`:
    no value from a log can move the cursor, change colours or reorder the line. A line
    that fits is rendered span by span with rich's styles (fast: a log of millions of
    lines stays a stream); only a line that must wrap goes through rich's text layout.
    """

    def __init__(self, out: IO[str], *, color: bool, width: int | None = None) -> None:
        self.out = out
        self.color = color
        self.width = width
        self._system = ColorSystem.STANDARD if color else None
        self.console = Console(
            file=out,
            force_terminal=color,
            no_color=not color,
            color_system="standard" if color else None,
            width=width or 1_000_000,
            highlight=False,
            markup=False,
            emoji=False,
        )

    def _span(self, text: str, style: str) -> str:
        if not style or self._system is None:
            return text
        return _style(style).render(text, color_system=self._system)

    def write(self, segments: Sequence[Segment]) -> None:
        """Print one line (wrapped to ``width`` when set and needed)."""
        pieces = [(printable(text), style) for text, style in segments if text]
        width = self.width
        if not width or cell_len("".join(text for text, _ in pieces)) <= width:
            self.out.write("".join(self._span(t, st) for t, st in pieces) + "\n")
            return
        margin = _margin(segments)
        head, body = Text(), Text()
        for i, (text, style) in enumerate(segments):
            (head if i < margin else body).append(printable(text), style or None)
        # Continuation lines start under the text after the margin (a header: 4 columns in).
        hang = head.cell_len if margin else 4
        room = width - hang
        if room < _MIN_ROOM:  # no room beside the margin: wrap under it instead
            head, body, hang, room = Text(), head + body, 0, width
        indent = Text(" " * hang)
        out = []
        for n, part in enumerate(body.wrap(self.console, room) or [Text()]):
            part.rstrip()
            line = (head if n == 0 else indent) + part
            out.append(
                "".join(
                    seg.style.render(seg.text, color_system=self._system)
                    if seg.style and self._system
                    else seg.text
                    for seg in line.render(self.console)
                )
            )
        self.out.write("\n".join(out) + "\n")

    def flush(self) -> None:
        self.out.flush()


@functools.lru_cache(maxsize=256)
def _style(words: str) -> Style:
    return Style.parse(words)
