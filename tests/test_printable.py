"""sim.printable: what may not reach a terminal raw is shown as an escape; the rest as is."""

from __future__ import annotations

import unicodedata

import pytest

from sim.printable import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcödé, 日本語, emoji 🙂", "plain text, ünïcödé, 日本語, emoji 🙂"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\x00b\x07c\x7fd\x9be", "a\\x00b\\x07c\\x7fd\\x9be"),
        ("tab\tand\nnewline\r", "tab\\tand\\nnewline\\r"),
        (
            "\u202eevil\u202c \u2066iso\u2069 \u200fmark",
            "\\u202eevil\\u202c \\u2066iso\\u2069 \\u200fmark",
        ),
        ("line\u2028sep\u2029 bom\ufeff zw\u200b", "line\\u2028sep\\u2029 bom\\ufeff zw\\u200b"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("tag \U000e0041", "tag \\U000e0041"),
    ],
)
def test_unsafe_characters_are_escaped(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(raw).isprintable() or "\\" in printable(raw)


def test_newlines_may_be_kept_for_blocks() -> None:
    assert printable("a\x1b\nb\u202e", keep_newlines=True) == "a\\x1b\nb\\u202e"


def test_the_result_always_encodes_and_holds_no_control_or_bidi_character() -> None:
    everything = "".join(map(chr, range(0x3000))) + "".join(map(chr, range(0xD7F0, 0xE100)))
    everything += "".join(map(chr, range(0xFE00, 0x10000))) + "\U000e0001\U000e007f"
    shown = printable(everything)
    shown.encode("utf-8")  # no lone surrogate left
    bidi_controls = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
    for c in shown:
        assert unicodedata.category(c) not in ("Cc", "Cs", "Zl", "Zp"), hex(ord(c))
        assert unicodedata.bidirectional(c) not in bidi_controls, hex(ord(c))
        assert c not in "\u200e\u200f\u061c\u200b\ufeff\u00ad", hex(ord(c))
