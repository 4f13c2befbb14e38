"""One colour per runtime key, shared by every picture turnsim draws.

The web pages (:mod:`sim.api.ui`), the swimlane pictures (:mod:`sim.logs.plot`) and the
explore report colour a runtime the same way, so ``planner@v1`` is the same orange on the
ribbon of a conversation and on the bars of its swimlane.

What a caller may rely on:

* :func:`runtime_colours` is deterministic: it depends only on the set of keys given, never
  on their order, on a seed or on the process (no ``hash()``: it is salted per process).
* Within one call, distinct keys get distinct colours while the palette lasts (8 colours);
  a key keeps its own preferred colour unless a key sorted before it already took it, so a
  runtime looks the same on every page that does not hold a colliding one.
* Red is never a runtime's colour: pictures keep it for failures (:data:`FAILURE`); grey is
  the unknown runtime ``''`` of an old row (:data:`UNKNOWN`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

#: Tableau's categorical colours without red (failures) and grey (unknown), ordered so that
#: the shipped runtimes fall on the most distinct ones (inventory@v1 blue, planner@v1 orange).
PALETTE: tuple[str, ...] = (
    "#e377c2",  # pink
    "#bcbd22",  # olive
    "#2ca02c",  # green
    "#1f77b4",  # blue
    "#8c564b",  # brown
    "#9467bd",  # purple
    "#17becf",  # cyan
    "#ff7f0e",  # orange
)
#: The colour of the unknown runtime ``''`` (a historical row that never recorded one).
UNKNOWN = "#b0b0b0"
#: Failures: refused and failed saves, wrong runtimes, failing seeds.
FAILURE = "#d62728"
#: Passing seeds.
SUCCESS = "#2ca02c"


def preferred_slot(key: str) -> int:
    """The palette index ``key`` takes when nothing else claims it (stable across runs)."""
    digest = hashlib.blake2s(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest, "big") % len(PALETTE)


def runtime_colours(keys: Iterable[str]) -> dict[str, str]:
    """A ``#rrggbb`` colour for each distinct key; ``''`` is :data:`UNKNOWN`.

    Keys are placed in sorted order, each on its preferred slot or the next free one; past
    eight keys colours repeat (pictures always label runtimes as well).
    """
    colours: dict[str, str] = {}
    taken: set[int] = set()
    for key in sorted(set(keys)):
        if key == "":
            colours[key] = UNKNOWN
            continue
        slot = preferred_slot(key)
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        colours[key] = PALETTE[slot]
    return colours


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` (``#rrggbb``)."""
    red, green, blue = (int(background[i : i + 2], 16) / 255 for i in (1, 3, 5))
    # Relative luminance (WCAG), with the sRGB curve approximated by a square.
    luminance = 0.2126 * red**2 + 0.7152 * green**2 + 0.0722 * blue**2
    return "#000000" if luminance > 0.18 else "#ffffff"
