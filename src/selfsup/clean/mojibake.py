"""Mojibake repair: text that was decoded with the wrong code page somewhere upstream ("cafÃ©").

ftfy undoes such mis-decodings when it is confident; everything else it is told to leave alone
(quotes, ligatures, widths, HTML entities, line breaks), so text that is not broken is unchanged.
"""

from __future__ import annotations

import re

import ftfy
from ftfy.badness import is_bad

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
# returns early otherwise) or it holds C1 controls or surrogates (the two other fixers on).
_C1_OR_SURROGATE = re.compile("[\x80-\x9f\ud800-\udfff]")


def fix_mojibake(text: str) -> str:
    """`text` with mis-decoded sequences repaired; one regex pass for text that has none."""
    if text.isascii() or not (is_bad(text) or _C1_OR_SURROGATE.search(text)):
        return text  # what ftfy would return, without its line-by-line pass
    return ftfy.fix_text(text, _CONFIG)
