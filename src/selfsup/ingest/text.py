"""Plain text (.txt, .md, .rst, and any listed extension without a reader of its own): as is.

Markup such as Markdown or reStructuredText is kept: it is the way these documents are written,
and a model of the domain should learn it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from selfsup.config import CorpusConfig


class Piece(NamedTuple):
    """One would-be document of a file: its text, or why it could not be read.

    `where` is appended to the file's path in the audit and the corpus (`#line7` for a JSONL
    record, `#msg2` for a message of an mbox, `!dir/a.pdf` for an archive member, "" for a whole
    file). `format` is the reader that made it (set by `extract`).
    """

    where: str
    text: str | None
    error: str | None = None
    format: str = ""


class Dropped(Exception):
    """A reader's verdict on its input (`encrypted`, `parse_error: ...`, `archive_limit: ...`); `reason` is the audit reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def pieces(text: str, cfg: CorpusConfig) -> Iterator[Piece]:
    """The whole decoded file is one document."""
    yield Piece("", text)
