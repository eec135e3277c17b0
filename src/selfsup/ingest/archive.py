"""zip and tar archives: read in memory, member by member, never extracted to disk.

Each member goes through `extract` like a file of its own (so archives nest, up to
`max_archive_depth`), and its pieces are named `archive.zip!member/path` (`!inner.zip!x.txt`
when nested). What keeps a hostile archive from taking the run down, with the member's reason:

- `unsafe_path`: a member named with `..` or an absolute path (zip slip); never read.
- `archive_limit: ...`: more than `max_archive_members` members (one line for the rest),
  more than `max_archive_bytes` decompressed in total (nested archives share the budget), or a
  member inflating past `max_archive_ratio` × its compressed size. Sizes are counted on the bytes
  actually decompressed, 64 KiB at a time, never taken from the headers.
- `too_large`: a member over `max_file_bytes`; `not_a_file`: links and devices in a tar;
  `encrypted`: a password-protected zip member.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Dropped, Piece

CHUNK = 1 << 16
RATIO_GRACE = 1 << 20  # small members may compress well; the ratio is judged past 1 MiB

# (data, name, cfg, budget, depth) → pieces of one member, never raising
Extract = Callable[[bytes, str, CorpusConfig, "Budget", int], list[Piece]]


@dataclass(slots=True)
class Budget:
    """What one top-level archive may still cost: decompressed bytes (shared by nested archives)."""

    bytes_left: int


def zip_pieces(data: bytes, cfg: CorpusConfig, budget: Budget, depth: int, extract: Extract) -> Iterator[Piece]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise Dropped(f"parse_error: {exc}") from None
    members = [i for i in infos if not i.is_dir()]

    def read(info: zipfile.ZipInfo) -> bytes:
        if info.flag_bits & 0x1:
            raise Dropped("encrypted")
        with archive.open(info) as fh:
            return _read_member(fh, min(info.compress_size, len(data)), cfg, budget)

    yield from _members(members, lambda i: i.filename, read, cfg, budget, depth, extract)


def tar_pieces(data: bytes, cfg: CorpusConfig, budget: Budget, depth: int, extract: Extract) -> Iterator[Piece]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Dropped(f"parse_error: {exc}") from None

    def read(member: tarfile.TarInfo) -> bytes:
        if not member.isfile():
            raise Dropped("not_a_file")
        fh = archive.extractfile(member)
        if fh is None:
            raise Dropped("not_a_file")
        return _read_member(fh, len(data), cfg, budget)

    def walk() -> Iterator[tarfile.TarInfo]:
        try:
            for member in archive:
                if not member.isdir():
                    yield member
        except (tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
            raise Dropped(f"parse_error: {exc}") from None

    yield from _members(walk(), lambda m: m.name, read, cfg, budget, depth, extract)


def _members(members, name_of, read, cfg: CorpusConfig, budget: Budget, depth: int, extract: Extract) -> Iterator[Piece]:
    for count, member in enumerate(members):
        name = printable(name_of(member))
        where = "!" + name
        if count >= cfg.max_archive_members:
            yield Piece(where, None, f"archive_limit: more than {cfg.max_archive_members} members; the rest are not read")
            return
        if is_unsafe(name):
            yield Piece(where, None, "unsafe_path")
            continue
        try:
            data = read(member)
        except Dropped as exc:
            yield Piece(where, None, exc.reason)
            if exc.reason.startswith("archive_limit: more than") and "decompressed" in exc.reason:
                return  # the budget is spent: nothing more can be read
            continue
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
            yield Piece(where, None, f"parse_error: {exc}"[:300])
            continue
        for piece in extract(data, name, cfg, budget, depth + 1):
            yield piece._replace(where=where + piece.where)


def _read_member(fh: IO[bytes], compressed: int, cfg: CorpusConfig, budget: Budget) -> bytes:
    """The member's bytes, counted as they are decompressed; Dropped as soon as a cap is passed."""
    chunks, total = [], 0
    while chunk := fh.read(CHUNK):
        total += len(chunk)
        budget.bytes_left -= len(chunk)
        if budget.bytes_left < 0:
            raise Dropped(f"archive_limit: more than {cfg.max_archive_bytes} bytes decompressed")
        if total > cfg.max_file_bytes:
            raise Dropped("too_large")
        if total > RATIO_GRACE and total > cfg.max_archive_ratio * max(compressed, 1):
            raise Dropped(f"archive_limit: compression ratio over {cfg.max_archive_ratio:g}")
        chunks.append(chunk)
    return b"".join(chunks)


def is_unsafe(name: str) -> bool:
    """Absolute (`/etc/x`, `C:\\x`, `\\\\host\\x`) or climbing (`a/../../x`) member names."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return True
    return ".." in unified.split("/")


def printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error
