"""Word (.docx, python-docx) and PowerPoint (.pptx, python-pptx) files.

DOCX: body paragraphs and tables in document order; a table row by row, cells joined by " | "
(a merged cell once). PPTX: per slide, the text of its shapes (groups and tables included) in
the slide's order, then its speaker notes; slides separated by a blank line. Headers, footers
and slide masters are boilerplate and left out. An Office file encrypted with a password is an
OLE container, not a zip: `encrypted`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Dropped, Piece

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def docx_pieces(data: bytes, cfg: CorpusConfig) -> Iterator[Piece]:
    import docx
    from docx.table import Table

    _check_container(data)
    document = docx.Document(io.BytesIO(data))
    blocks = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            blocks.append("\n".join(_row_text(row.cells) for row in block.rows))
        elif block.text.strip():
            blocks.append(block.text)
    yield Piece("", "\n\n".join(b for b in blocks if b.strip()))


def pptx_pieces(data: bytes, cfg: CorpusConfig) -> Iterator[Piece]:
    import pptx

    _check_container(data)
    deck = pptx.Presentation(io.BytesIO(data))
    slides = []
    for slide in deck.slides:
        parts = [text for shape in slide.shapes for text in _shape_texts(shape)]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            parts.append(slide.notes_slide.notes_text_frame.text)
        slides.append("\n".join(p for p in parts if p.strip()))
    yield Piece("", "\n\n".join(s for s in slides if s))


def _shape_texts(shape) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for inner in shape.shapes:
            yield from _shape_texts(inner)
    elif getattr(shape, "has_table", False) and shape.has_table:
        yield "\n".join(_row_text(row.cells) for row in shape.table.rows)
    elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        yield shape.text_frame.text


def _row_text(cells) -> str:
    seen, texts = set(), []
    for cell in cells:
        key = id(getattr(cell, "_tc", cell))
        if key not in seen:  # python-docx repeats a merged cell for every grid column it spans
            seen.add(key)
            texts.append(cell.text.strip())
    return " | ".join(texts)


def _check_container(data: bytes) -> None:
    if data.startswith(_OLE):
        raise Dropped("encrypted")
    if not data.startswith(b"PK"):
        raise Dropped("parse_error: not an Office Open XML (zip) file")
