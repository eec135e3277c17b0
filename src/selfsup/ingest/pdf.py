"""PDF (pypdfium2): the text of every page in reading order, pages separated by a blank line.

pdfium lays text out the way a viewer does (word spaces kept, unlike pypdf). A document that
needs a password is `encrypted`; one pdfium cannot open (corrupt, truncated) is a `parse_error`.
A PDF whose owner password only restricts printing opens without one and is read.
"""

from __future__ import annotations

from collections.abc import Iterator

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Dropped, Piece


def pieces(data: bytes, cfg: CorpusConfig) -> Iterator[Piece]:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            raise Dropped("encrypted") from None
        raise Dropped(f"parse_error: {exc}") from None
    pages = []
    try:
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_bounded().strip())
            textpage.close()
            page.close()
    finally:
        document.close()
    yield Piece("", "\n\n".join(p for p in pages if p))
