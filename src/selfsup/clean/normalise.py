"""One canonical form for every document's text, applied before hashing.

The document id is a hash of the normalised text, so two files that differ only in line endings,
trailing spaces, a byte-order mark or NFC/NFD composition collapse into one document. The rules
are deliberately conservative: tabs, indentation and single/double line breaks are kept, because
code and tables live in these corpora and their layout carries meaning.
"""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")
# Line breaks other than LF: CRLF, CR, NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR.
_LINE_BREAKS = re.compile("\r\n|[\r\x85\u2028\u2029]")
# C0/C1 control characters except \t and \n, DEL, and the byte-order mark / zero-width no-break space.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
# Whitespace (other than the newline itself) at the end of a line.
_TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.MULTILINE)
# Two or more blank lines in a row.
_BLANK_RUN = re.compile(r"\n{3,}")
# Whitespace that is not ASCII (no-break and typographic spaces): with none of it, what
# `_TRAILING_SPACE` can match after `_CONTROL` ran is spaces and tabs before a newline or the end.
_NON_ASCII_SPACE = re.compile(r"[^\S\x00-\x7f]")


def normalise_text(text: str) -> str:
    """The canonical form of `text`; `normalise_text(normalise_text(t)) == normalise_text(t)`.

    In order: lone surrogates (possible in JSON input) become U+FFFD; CRLF, CR, NEL and the
    Unicode line/paragraph separators become LF; control characters other than TAB and LF (and
    the BOM) are removed; Unicode NFC; trailing whitespace is removed from every line; a run of two or
    more blank lines becomes one blank line; leading and trailing whitespace of the whole text
    is removed. Tabs and indentation are kept.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be stored as UTF-8 (Parquet, the hash)
        text = _SURROGATE.sub("\ufffd", text)
    # Each substitution runs only if it can match; the tests are C-speed substring searches.
    if "\r" in text or not text.isascii() and ("\x85" in text or "\u2028" in text or "\u2029" in text):
        text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = unicodedata.normalize("NFC", text)  # after removing controls: they could split a pair
    if (" \n" in text or "\t\n" in text or text.endswith((" ", "\t"))
            or not text.isascii() and _NON_ASCII_SPACE.search(text)):  # fmt: skip
        text = _TRAILING_SPACE.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()
