"""Text printed for people: control and bidi characters made visible.

:func:`printable` is the one escaping helper of every human-readable output (timelines,
reports, tables, one-line errors). A value from a scenario file, a log or a database may
hold terminal escape sequences, NUL, line breaks or right-to-left overrides; printed raw
they repaint the terminal, hide text or reorder it. JSON output never goes through here:
it stays exact.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL; soft hyphen; the bidi marks, embeddings, overrides and
# isolates; zero-width and invisible format characters; line and paragraph separators;
# the byte order mark; interlinear annotations; lone surrogates (unprintable); tag chars.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200c\u200e\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]"
)


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control, bidi and invisible format character written as a
    Python-style escape (``\\x1b``, ``\\u202e``, ``\\n``); everything else unchanged.

    ``keep_newlines`` leaves ``\\n`` as a line break (for multi-line blocks). The result
    holds no character that moves the cursor, changes colours or reorders text, so one
    value printed stays on its line and reads as it is stored.
    """
    if not _UNSAFE.search(text):
        return text
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)
