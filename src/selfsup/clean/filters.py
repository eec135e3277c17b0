"""Quality filters: small rules, each keep or drop-with-reason (`filtered:<rule>`), thresholds in [corpus].

    long_line    a line longer than `max_line_chars` (minified blobs, base64, a 200 MB single line)
    symbols      letters are fewer than `min_letter_fraction` of the non-space characters
                 (tables of numbers, symbol noise, ASCII art); judged on the first 100k characters
    repetition   characters in lines that repeat an earlier line exceed `max_duplicate_line_fraction`
                 (Gopher's dup-line rule; only with at least 4 non-blank lines)
    boilerplate  more than `max_boilerplate_line_fraction` of the lines are cookie / copyright /
                 navigation / "click here" lines (only with at least 3 non-blank lines)

Rules run in that order and the first that fires names the reason. Code documents only get
`long_line`: symbols and repeated lines are what code looks like.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from selfsup.config import CorpusConfig

_NOT_LETTER = re.compile(r"[\W\d_]+")
_SPACE = re.compile(r"\s+")
_BOILERPLATE = re.compile(
    r"(all rights reserved|©|\(c\) \d{4}|copyright \d{4}|cookie|privacy policy|terms of (use|service)|"
    r"click here|subscribe|sign in|log ?in|skip to (main )?content|back to top|share this|"
    r"follow us|powered by|lorem ipsum)",
    re.IGNORECASE,
)
SAMPLE = 100_000
# A literal (lower-case) that each alternative of `_BOILERPLATE` cannot match without: a text
# holding none of them has no boilerplate line, found by C-speed `in` tests on the lowered text
# instead of the case-insensitive regex tried at every position of every line.
_BOILERPLATE_LITERALS = (
    "all rights reserved", "©", "(c) ", "copyright ", "cookie", "privacy policy", "terms of ", "click here",
    "subscribe", "sign in", "login", "log in", "skip to ", "back to top", "share this", "follow us", "powered by",
    "lorem ipsum",
)  # fmt: skip
# The only non-ASCII characters that re.IGNORECASE matches to an ASCII letter (İ ı ſ K: Unicode's
# case folding): `str.lower` does not turn them into that letter, so a text holding one of them
# skips the literal test (tests/clean/test_fast_paths.py finds them by trying every code point).
CASE_TWINS = re.compile("[\u0130\u0131\u017f\u212a]")
# ASCII characters by class, read from the regexes above, for counting ASCII text bytewise.
_ASCII_SPACE = bytes(b for b in range(128) if _SPACE.fullmatch(chr(b)))
_ASCII_NOT_LETTER = bytes(b for b in range(128) if _NOT_LETTER.fullmatch(chr(b)))
_NON_ASCII = re.compile("[^\x00-\x7f]+")


def long_line(text: str, cfg: CorpusConfig) -> bool:
    if len(text) <= cfg.max_line_chars:
        return False
    return max(map(len, text.split("\n"))) > cfg.max_line_chars


def symbols(text: str, cfg: CorpusConfig) -> bool:
    non_space, letters = letter_counts(text[:SAMPLE])
    if non_space < 20:  # too little to judge
        return False
    return letters < cfg.min_letter_fraction * non_space


def letter_counts(text: str) -> tuple[int, int]:
    """(characters that are not whitespace, letters) of `text`, as `_SPACE` and `_NOT_LETTER` classify them.

    Each character counts on its own, so the ASCII ones are counted bytewise (`bytes.translate`
    deletes a class) and only the non-ASCII ones go through the regexes.
    """
    ascii_part = text.encode("ascii", "ignore")
    non_space = len(ascii_part.translate(None, _ASCII_SPACE))
    letters = len(ascii_part.translate(None, _ASCII_NOT_LETTER))
    if len(ascii_part) != len(text):
        others = "".join(_NON_ASCII.findall(text))
        non_space += len(_SPACE.sub("", others))
        letters += len(_NOT_LETTER.sub("", others))
    return non_space, letters


def repetition(text: str, cfg: CorpusConfig) -> bool:
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) < 4:
        return False
    seen: set[str] = set()
    repeated = 0
    for line in lines:
        if line in seen:
            repeated += len(line)
        seen.add(line)
    return repeated > cfg.max_duplicate_line_fraction * sum(map(len, lines))


def boilerplate(text: str, cfg: CorpusConfig) -> bool:
    if not may_hold_boilerplate(text):
        return False  # no line can match: hits = 0
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 3:
        return False
    hits = sum(1 for line in lines if len(line) < 200 and _BOILERPLATE.search(line))
    return hits > cfg.max_boilerplate_line_fraction * len(lines)


def may_hold_boilerplate(text: str) -> bool:
    """False only if no line of `text` can match `_BOILERPLATE` (see `_BOILERPLATE_LITERALS`)."""
    if not text.isascii() and CASE_TWINS.search(text):
        return True
    lowered = text.lower()
    return any(literal in lowered for literal in _BOILERPLATE_LITERALS)


RULES: list[tuple[str, Callable[[str, CorpusConfig], bool]]] = [
    ("long_line", long_line), ("symbols", symbols), ("repetition", repetition), ("boilerplate", boilerplate),
]  # fmt: skip
CODE_RULES = {"long_line"}


def quality_reason(text: str, cfg: CorpusConfig, code: bool = False) -> str | None:
    """None to keep the (normalised) text, else `filtered:<rule>` for the first rule that fires."""
    for name, rule in RULES:
        if code and name not in CODE_RULES:
            continue
        if rule(text, cfg):
            return f"filtered:{name}"
    return None
