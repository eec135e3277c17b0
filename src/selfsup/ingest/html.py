"""HTML (.html, .htm): the main text of the page, without menus, headers, footers or scripts.

trafilatura finds the main content (it scores blocks by text density and drops boilerplate).
When it finds nothing (tiny or unusual pages) the fallback is lxml: the text of <body> minus
nav, header, footer, aside, script, style and similar, with a line break after every block.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import lxml.etree
import lxml.html

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Piece

logging.getLogger("trafilatura").setLevel(logging.ERROR)  # it warns about every odd page

_BOILERPLATE = ("nav", "header", "footer", "aside", "script", "style", "noscript", "template", "form", "menu")
_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "pre", "blockquote",
    "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "figcaption",
}  # fmt: skip


def pieces(text: str, cfg: CorpusConfig) -> Iterator[Piece]:
    """The page's main text is one document."""
    yield Piece("", main_text(text))


def main_text(html: str) -> str:
    """Main text of a page: trafilatura, else the body text without boilerplate elements."""
    import trafilatura  # here, not at import: a training-only machine (a GPU node) need not have it

    try:
        extracted = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
    except Exception:  # a hostile page must not take the run down; the fallback still tries
        extracted = None
    return extracted if extracted is not None else _body_text(html)


def _body_text(html: str) -> str:
    try:
        root = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):  # empty document, or an encoding declaration in a str
        try:
            root = lxml.html.document_fromstring(html.encode("utf-8"))
        except (lxml.etree.ParserError, ValueError):
            return ""
    body = root.find("body")
    if body is None:
        body = root
    for element in list(body.iter(*_BOILERPLATE)):
        element.drop_tree()
    for element in body.iter(*_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    return body.text_content()
