"""Mojibake repair: text that was decoded with the wrong code page somewhere upstream ("cafÃ©").

ftfy undoes such mis-decodings when it is confident; everything else it is told to leave alone
(quotes, ligatures, widths, HTML entities, line breaks), so text that is not broken is unchanged.
"""

from __future__ import annotations

import re

import ftfy
import numpy as np
from ftfy.badness import BADNESS_RE

_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


# With the settings above, ftfy changes a text only if its badness check fires (`fix_encoding`
# returns early otherwise) or it holds C1 controls or surrogates (the two other fixers on):
# `_C1_OR_SURROGATE`, tested on the code points by `_has_c1_or_surrogate`.
_C1_OR_SURROGATE = re.compile("[\x80-\x9f\ud800-\udfff]")


def _badness_reach() -> int | None:
    """How far a match of ftfy's badness regex can reach from a non-ASCII character (its longest
    match - 1), if every alternative of the regex needs one; None if not (another ftfy)."""
    try:
        try:
            from re import _constants as sre
            from re import _parser
        except ImportError:  # Python 3.10
            import sre_constants as sre
            import sre_parse as _parser

        parsed = _parser.parse(BADNESS_RE.pattern, BADNESS_RE.flags)
        (op, (_, alternatives)), = parsed.data  # one top-level `a|b|...`

        def non_ascii(item_op, argument) -> bool:  # one mandatory character that cannot be ASCII
            if item_op is sre.LITERAL:
                return argument > 0x7F
            members = argument if item_op is sre.IN else []
            return bool(members) and all(
                (kind is sre.LITERAL and value > 0x7F) or (kind is sre.RANGE and value[0] > 0x7F) for kind, value in members
            )

        if op is not sre.BRANCH or not all(any(non_ascii(*item) for item in alt.data) for alt in alternatives):
            return None
        return int(parsed.getwidth()[1]) - 1
    except Exception:  # noqa: BLE001 (private parser API: any surprise means "search the whole text")
        return None


# Every alternative of ftfy's badness regex needs a non-ASCII character and matches at most 7
# characters: so a match lies within 6 characters of a non-ASCII character, and searching those
# windows only finds exactly what one search of the whole text finds. (The regex has no
# lookaround; its one anchor, `^`, matches at the string's real start only, whatever `pos` is.)
# Overlapping windows are searched as one: any match inside their union is a match of the text.
# Checked on the installed ftfy at import; tests/clean/test_mojibake.py compares the two searches.
BADNESS_REACH = _badness_reach()


def fix_mojibake(text: str) -> str:
    """`text` with mis-decoded sequences repaired; one pass over its code points for text that has none."""
    if text.isascii():
        return text  # what ftfy would return, without its line-by-line pass
    codes = code_points(text)
    non_ascii = np.flatnonzero(codes > 0x7F)
    if not (_has_c1_or_surrogate(codes[non_ascii]) or is_bad_near_non_ascii(text, non_ascii)):
        return text
    return ftfy.fix_text(text, _CONFIG)


def code_points(text: str) -> np.ndarray:
    """(len(text),) uint32: the text's code points, lone surrogates included."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _has_c1_or_surrogate(codes: np.ndarray) -> bool:
    """Whether `_C1_OR_SURROGATE` matches: a C1 control (U+0080-U+009F) or a surrogate."""
    return bool((((codes >= 0x80) & (codes <= 0x9F)) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any())


def is_bad_near_non_ascii(text: str, non_ascii: np.ndarray | None = None) -> bool:
    """`ftfy.badness.is_bad(text)`, searched only around the non-ASCII characters (mostly-ASCII
    prose with a few curly quotes: a few short searches instead of 37 alternatives tried at
    every position). `non_ascii`: their positions, if known."""
    if BADNESS_REACH is None:
        return bool(BADNESS_RE.search(text))
    if non_ascii is None:
        non_ascii = np.flatnonzero(code_points(text) > 0x7F)
    if not non_ascii.size:
        return False
    starts, ends = non_ascii - BADNESS_REACH, non_ascii + 1 + BADNESS_REACH  # each character's window
    gaps = np.flatnonzero(starts[1:] > ends[:-1])  # where one window ends before the next begins
    for start, end in zip(starts[np.r_[0, gaps + 1]].tolist(), ends[np.r_[gaps, -1]].tolist()):
        if BADNESS_RE.search(text, max(0, start), end):
            return True
    return False
