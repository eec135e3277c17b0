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


def long_line(text: str, cfg: CorpusConfig) -> bool:
    if len(text) <= cfg.max_line_chars:
        return False
    return max(map(len, text.split("\n"))) > cfg.max_line_chars


def symbols(text: str, cfg: CorpusConfig) -> bool:
    sample = _SPACE.sub("", text[:SAMPLE])
    if len(sample) < 20:  # too little to judge
        return False
    letters = len(_NOT_LETTER.sub("", sample))
    return letters < cfg.min_letter_fraction * len(sample)


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
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 3:
        return False
    hits = sum(1 for line in lines if len(line) < 200 and _BOILERPLATE.search(line))
    return hits > cfg.max_boilerplate_line_fraction * len(lines)


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
