"""Queries and the passages they should find, read off the structure of a document's text.

An embedding model is judged by whether a question a person would type finds the passage that
answers it. No one labels such questions for an organisation's manuals, but the documents label
themselves: a heading names what its section is about, a paragraph's first sentence announces the
rest, and any sentence belongs with the passage around it. Three kinds of (query, passage) pairs:

- `title`: a heading (or a page title) → the first passage of its section;
- `first_sentence`: a paragraph's first sentence → the passage it opens, that sentence removed;
- `ict`: the inverse cloze task (Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open
  Domain QA"): another sentence of a passage → the passage with that sentence removed.

The same mining makes training pairs from the training documents (pairs/rows.py) and held-out
questions from the validation documents (evaluation/retrieval.py), so what the model is trained
on and what it is judged on are the same kind of task on disjoint documents.

Works on the plain text every reader produces (ingest/): a heading is a line that looks like one
(short, no closing punctuation, followed by a paragraph), a Markdown `#` line, or a reST/Setext
title over a line of `===`/`---`.

Example:
    "UPSERT\\nUPSERT is a clause added to INSERT. It makes INSERT behave as an UPDATE.\\n"
    → passage 0: "UPSERT is a clause added to INSERT. It makes INSERT behave as an UPDATE."
      title          "UPSERT" → passage 0
      first_sentence "UPSERT is a clause added to INSERT." → "It makes INSERT behave as an UPDATE."
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

PASSAGE_WORDS = 100  # a passage: paragraphs of a section joined up to about this many words
MIN_PASSAGE_WORDS = 12  # shorter passages say too little to be found
HEADING_MAX_WORDS = 10
MIN_REST_WORDS = 8  # what stays of a passage when a sentence is taken out of it

_UNDERLINE = re.compile(r"^\s*([=\-~^*+#`'\".:_])\1{2,}\s*$")  # reST / Setext title underlines
_MARKDOWN_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SECTION_NUMBER = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[A-Z]\.|[IVX]+\.)\s+")  # "1.2. ", "A. "
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"\w+")
_CONTINUES = set("a an the of to in on for by with and or but that which is are be as at from upon however "
                 "if when than then so not no into onto this these its their".split())  # a wrapped line ends so
_NOT_A_HEADING = re.compile(r"/\*|\*/|==|;|[{}<>]|\s=\s|\s{2,}")  # code, comments, and wrapped <pre> text


@dataclass(frozen=True)
class Passage:
    doc: int  # index of its document among those mined
    text: str
    heading: str  # the section's heading ("" before the first one)
    first_of_section: bool


@dataclass(frozen=True)
class Pair:
    kind: str  # "title" | "first_sentence" | "ict"
    query: str
    positive: str  # the passage as the query should find it (the query's sentence taken out)
    passage: int  # index of the passage it came from
    doc: int


def words(text: str) -> list[str]:
    """Lower-cased word tokens: what BM25 counts and what the length thresholds measure."""
    return _WORD.findall(text.lower())


def split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph.strip()) if s.strip()]


def _is_heading_like(line: str) -> bool:
    """Short, opens with a capital or a digit, no sentence or code inside, no closing punctuation."""
    line = _clean_heading(line) or line
    n = len(line.split())
    return (0 < n <= HEADING_MAX_WORDS and len(line) <= 100 and (line[0].isupper() or line[0].isdigit())
            and line[-1] not in ".,;:!?(){}[]=<>" and re.search(r"[A-Za-z]{3}", line) is not None
            and not _NOT_A_HEADING.search(line) and not _SENTENCE_END.search(line)
            and (n > 1 or not re.search(r"[./\\]", line))
            and line.split()[-1].lower() not in _CONTINUES and (n <= 5 or ", " not in line))


def _lines(text: str) -> list[tuple[str, bool]]:
    """(line, is_heading) for every non-empty line, underlines folded into the title above them."""
    raw = [line.strip() for line in text.splitlines()]
    out: list[tuple[str, bool]] = []
    for i, line in enumerate(raw):
        if not line:
            continue
        if _UNDERLINE.match(line):
            if out and _is_heading_like(out[-1][0]):
                out[-1] = (out[-1][0], True)
            continue
        md = _MARKDOWN_HEADING.match(line)
        if md and md.group(1):
            out.append((md.group(1), True))
            continue
        following = next((r for r in raw[i + 1 :] if r and not _UNDERLINE.match(r)), "")
        after_a_paragraph = not out or out[-1][1] or out[-1][0][-1] in ".:!?;)}\"'"  # not a wrapped line's tail
        opens_a_paragraph = len(following.split()) >= 2 * HEADING_MAX_WORDS // 3 and not following[0].islower()
        out.append((line, after_a_paragraph and opens_a_paragraph and _is_heading_like(line)))
    return out


def _clean_heading(line: str) -> str:
    return _SECTION_NUMBER.sub("", line).strip()


def passages_of(text: str, doc: int, passage_words: int = PASSAGE_WORDS) -> list[Passage]:
    """A document's sections cut into passages: consecutive paragraphs of a section joined up to
    about `passage_words` words (a longer paragraph is cut between sentences)."""
    out: list[Passage] = []
    heading, current, first = "", [], True

    def flush() -> None:
        nonlocal current, first
        body = " ".join(current).strip()
        if len(words(body)) >= MIN_PASSAGE_WORDS:
            out.append(Passage(doc, body, heading, first))
            first = False
        current = []

    for line, is_heading in _lines(text):
        if is_heading:
            flush()
            heading, first = _clean_heading(line), True
            continue
        for piece in _pieces(line, passage_words):
            if current and len(words(" ".join(current))) + len(words(piece)) > passage_words:
                flush()
            current.append(piece)
    flush()
    return out


def _pieces(paragraph: str, passage_words: int) -> list[str]:
    """A paragraph, or its sentences grouped under `passage_words` words when it is longer."""
    if len(words(paragraph)) <= passage_words:
        return [paragraph]
    groups, group = [], []
    for sentence in split_sentences(paragraph):
        if group and len(words(" ".join(group + [sentence]))) > passage_words:
            groups.append(" ".join(group))
            group = []
        group.append(sentence)
    return groups + ([" ".join(group)] if group else [])


def mine_pairs(passages: list[Passage], seed: int) -> list[Pair]:
    """Every title pair, every first-sentence pair, and one ICT pair per passage with a sentence to spare."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for i, p in enumerate(passages):
        if p.first_of_section and len(words(p.heading)) >= 1:
            pairs.append(Pair("title", p.heading, p.text, i, p.doc))
        sentences = split_sentences(p.text)
        if len(sentences) < 2:
            continue
        rest = " ".join(sentences[1:])
        if len(words(rest)) >= MIN_REST_WORDS and len(words(sentences[0])) >= 4:
            pairs.append(Pair("first_sentence", sentences[0], rest, i, p.doc))
        if len(sentences) >= 3:
            k = rng.randrange(1, len(sentences))
            rest = " ".join(sentences[:k] + sentences[k + 1 :])
            if len(words(sentences[k])) >= 4 and len(words(rest)) >= MIN_REST_WORDS:
                pairs.append(Pair("ict", sentences[k], rest, i, p.doc))
    return pairs


def mine_documents(texts: list[str], seed: int, passage_words: int = PASSAGE_WORDS) -> tuple[list[Passage], list[Pair]]:
    """All passages of `texts` (in order) and the pairs mined from them."""
    passages = [p for doc, text in enumerate(texts) for p in passages_of(text, doc, passage_words)]
    return passages, mine_pairs(passages, seed)
