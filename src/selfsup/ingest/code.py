"""Source code (the extensions in `[corpus] code_extensions`): kept verbatim.

No mojibake repair and no prose filters (code is symbol-heavy by nature); only the common
normalisation (line endings, trailing spaces) that every document gets.
"""

from __future__ import annotations

from collections.abc import Iterator

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Piece


def pieces(text: str, cfg: CorpusConfig) -> Iterator[Piece]:
    yield Piece("", text)
