"""Find every input file under the sources, in a fixed order, without reading any of them.

The walk is depth-first with the entries of each folder in sorted name order, so "the first
occurrence" of a duplicate is the same on every run. Nothing met on the way is skipped in
silence: a symlink (not followed unless `follow_symlinks`), a fifo, socket or device, or a folder
that cannot be listed comes out as an `Entry` with a `problem`, which becomes its audit line.
Only the caller's `exclude` folders (the output folder) are passed over: they are not input.

Paths are kept as the OS gives them (`str` with surrogate escapes for names that are not valid
UTF-8) so the file can still be opened; `display_path` is the printable form written to the
audit and the corpus.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from selfsup.errors import UsageError


@dataclass(frozen=True, slots=True)
class Entry:
    """One input file (or an unreadable folder) as found by the walk."""

    path: Path  # openable path, as walked from its source
    display: str  # printable UTF-8 form of `path` (see display_path)
    rel: str  # printable path relative to its source ("" when the source is this file)
    source_index: int
    problem: str | None = None  # audit reason if it cannot be read as a regular file
    size: int = 0
    mtime_ns: int = 0


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 are written as `\\xNN`, never raised on."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_sources(sources: Sequence[Path]) -> list[Path]:
    """The sources as Paths; UsageError for one that does not exist or is a folder without files."""
    if not sources:
        raise UsageError("no sources given; pass one or more files or folders to ingest")
    checked = []
    for source in map(Path, sources):
        if not os.path.lexists(source):
            raise UsageError(f"source {display_path(source)} does not exist; check the path (and [corpus] sources)")
        if source.is_dir() and not _has_any_file(source):
            raise UsageError(f"source folder {display_path(source)} is empty; put documents in it or remove it from the sources")
        checked.append(source)
    return checked


def walk_sources(sources: Sequence[Path], follow_symlinks: bool = False, exclude: Iterable[Path] = ()) -> Iterator[Entry]:
    """Every file under `sources`, each once, in source order then sorted depth-first order.

    A source named explicitly is followed even if it is a symlink (the user asked for it);
    symlinks met inside a folder are followed only with `follow_symlinks`, and then each real
    folder is entered once (no loops). A file reached under two names (a hard link, a followed
    link) is listed under both: reading the second finds a duplicate, which the audit records.
    """
    seen_dirs = {_identity(p) for p in exclude if os.path.isdir(p)}
    seen_files: set[str] = set()
    for index, source in enumerate(sources):
        source = Path(source)
        try:
            st = os.stat(source)
        except OSError as exc:
            yield _entry(source, "", index, problem=_unreadable(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) not in seen_dirs:
                seen_dirs.add((st.st_dev, st.st_ino))
                yield from _walk_dir(source, source, index, follow_symlinks, seen_dirs, seen_files)
        elif os.path.abspath(source) not in seen_files:
            seen_files.add(os.path.abspath(source))
            yield _classified(source, "", index, st)


def _walk_dir(
    folder: Path,
    source: Path,
    index: int,
    follow: bool,
    seen_dirs: set[tuple[int, int]],
    seen_files: set[str],
) -> Iterator[Entry]:
    """Depth-first with an explicit stack: a hostile, very deep tree cannot exhaust the recursion limit."""
    try:
        stack = [_children(folder)]
    except OSError as exc:
        yield _entry(folder, _rel(folder, source), index, problem=_unreadable(exc))
        return
    while stack:
        path = next(stack[-1], None)
        if path is None:
            stack.pop()
            continue
        rel = _rel(path, source)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if not follow:
                    yield _entry(path, rel, index, problem="symlink")
                    continue
                st = os.stat(path)  # the target; a broken link raises here
        except OSError as exc:
            yield _entry(path, rel, index, problem=_unreadable(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:  # a folder reached twice (a followed link, a loop) is walked once
                continue
            seen_dirs.add(key)
            try:
                stack.append(_children(path))
            except OSError as exc:  # a folder we may not list is accounted for as one entry
                yield _entry(path, rel, index, problem=_unreadable(exc))
        elif os.path.abspath(path) not in seen_files:  # a path named twice (overlapping sources) is read once
            seen_files.add(os.path.abspath(path))
            yield _classified(path, rel, index, st)


def _children(folder: Path) -> Iterator[Path]:
    """The folder's entries in sorted name order (listed now, so an OSError is raised here)."""
    with os.scandir(folder) as it:
        names = sorted(entry.name for entry in it)
    return iter([folder / name for name in names])


def _classified(path: Path, rel: str, index: int, st: os.stat_result) -> Entry:
    problem = None if stat.S_ISREG(st.st_mode) else "not_a_file"
    return _entry(path, rel, index, problem=problem, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _entry(path: Path, rel: str, index: int, **kw) -> Entry:
    return Entry(path=path, display=display_path(path), rel=rel, source_index=index, **kw)


def _rel(path: Path, source: Path) -> str:
    return display_path(path.relative_to(source)) if path != source else ""


def _unreadable(exc: OSError) -> str:
    return f"unreadable: {exc.strerror or exc.__class__.__name__}"


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _has_any_file(folder: Path) -> bool:
    """True as soon as the walk meets anything that is not a folder (a file, a link, a fifo)."""
    return next(walk_sources([folder]), None) is not None
