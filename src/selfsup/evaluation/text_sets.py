"""General text sets (`[eval] texts`): the yardstick for what continued training cost elsewhere.

A set is a file or a folder the user names; its text is read plainly (.txt, .md, .rst, .text and
files without an extension as UTF-8 text, .html / .htm through the ingest stage's main-text
extractor). No sandbox, cleaning or dedup: these are the user's own reference texts, read once,
and a set must stay the same from one evaluation to the next so that changes are the model's.

Long files (a whole book) are cut into passages of about `PASSAGE_CHARS` at blank lines, and
passages are taken evenly spread over the whole set (a fixed stride, no randomness), so a
capped sample still covers the set rather than its first chapter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from selfsup.errors import UsageError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ""}
HTML_SUFFIXES = {".html", ".htm"}
PASSAGE_CHARS = 2000
MAX_CHARS_PER_SET = 8_000_000  # read at most this much of a set: enough for any sample we take


@dataclass(frozen=True, slots=True)
class TextSet:
    name: str  # how eval.json and the report name it
    path: Path
    passages: list[str]


def read_text_sets(paths: list[Path], max_passages: int) -> list[TextSet]:
    """One `TextSet` per path, named after the file or folder (made unique), `max_passages` each."""
    sets, used = [], {"heldout"}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UsageError(f"[eval] texts: {path} does not exist; name files or folders of plain text or HTML")
        name = path.stem if path.is_file() else path.name
        base, k = name or "general", 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        passages = spread(list(_passages(path, max_files=max_passages)), max_passages)
        if not passages:
            raise UsageError(f"[eval] texts: {path} holds no readable text (.txt, .md, .rst, .html files)")
        sets.append(TextSet(name, path, passages))
    return sets


def spread(items: list, n: int) -> list:
    """At most n items, evenly spaced over the list (first one included): a deterministic sample."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def split_passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Paragraphs (blank-line separated) joined up to ~size characters; a longer paragraph is cut."""
    out, current = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        while len(para) > size:
            cut = para.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            if current:
                out.append(current)
                current = ""
            out.append(para[:cut].strip())
            para = para[cut:].strip()
        if not para:
            continue
        if current and len(current) + len(para) + 2 > size:
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


def _passages(path: Path, max_files: int):
    """Passages of at most `max_files` files spread over the set (each file gives at least one)."""
    read = 0
    for file in spread(_files(path), max_files):
        if read >= MAX_CHARS_PER_SET:
            return
        text = _read(file)
        read += len(text)
        yield from split_passages(text)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [
        p for p in sorted(path.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and p.suffix.lower() in TEXT_SUFFIXES | HTML_SUFFIXES
    ]


def _read(file: Path) -> str:
    try:
        raw = file.read_bytes()[: MAX_CHARS_PER_SET * 4]
    except OSError as exc:
        raise UsageError(f"[eval] texts: cannot read {file} ({exc.strerror or exc})") from None
    if b"\0" in raw[:4096]:
        return ""  # a binary file in the folder: not text
    text = raw.decode("utf-8", errors="replace")
    if file.suffix.lower() in HTML_SUFFIXES:
        from selfsup.ingest.html import main_text

        text = main_text(text) or ""
    return text
