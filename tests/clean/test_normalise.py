"""normalise_text: the canonical form every document is hashed and stored in."""

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from selfsup.clean import normalise_text


def test_line_endings_become_lf():
    """CRLF, lone CR and the Unicode line/paragraph separators all become LF."""
    assert normalise_text("a\r\nb\rc\u2028d\u2029e\x85f") == "a\nb\nc\nd\ne\nf"


def test_trailing_whitespace_removed_but_tabs_and_indentation_kept():
    """Trailing spaces go; tabs and leading indentation carry meaning in code and stay."""
    assert normalise_text("def f():  \n\treturn 1\t \n    x = 2   ") == "def f():\n\treturn 1\n    x = 2"


def test_runs_of_blank_lines_collapse_to_one():
    """Two or more blank lines become one blank line; a single blank line is kept."""
    assert normalise_text("a\n\nb") == "a\n\nb"
    assert normalise_text("a\n\n\nb") == "a\n\nb"
    assert normalise_text("a\n\n \n\t\n\n\nb") == "a\n\nb"


def test_control_characters_and_bom_removed():
    """Control characters other than TAB and LF, DEL, C1 controls and the BOM are removed."""
    assert normalise_text("\ufeffa\x00b\x07c\x1b[0md\x7fe\x9ff\x0cg") == "abc[0mdefg"


def test_nfc_and_outer_whitespace():
    """Decomposed characters are composed (NFC) and the text is stripped at both ends."""
    out = normalise_text("  \n cafe\u0301 \n\n")
    assert out == "caf\u00e9" and unicodedata.is_normalized("NFC", out)


def test_lone_surrogates_become_replacement_characters():
    """A lone surrogate (possible in JSON) cannot be stored as UTF-8, so it becomes U+FFFD."""
    assert normalise_text("a\ud800b") == "a\ufffdb"


def test_whitespace_only_is_empty():
    """Whitespace-only text normalises to the empty string (the ingest then drops it as `empty`)."""
    assert normalise_text(" \t\r\n\u3000\n") == ""


@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\r\n\t \x85\u2028\ufeff\x00\u0301")))
def test_idempotent(text):
    """Normalising twice gives the same text as normalising once (ids are stable)."""
    once = normalise_text(text)
    assert normalise_text(once) == once
