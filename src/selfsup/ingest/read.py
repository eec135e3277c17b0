"""Read one input file's bytes, safely: bounded size, no blocking, no surprise symlinks.

The walk has already classified the file, but the folder can change under us. So the file is
opened with O_NONBLOCK (a fifo swapped in cannot hang the run) and, unless links are followed,
O_NOFOLLOW (a link swapped in is refused); what was opened is checked again with fstat, and at
most `cap + 1` bytes are read, so a file that grew past the cap is caught without holding it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Unreadable(Exception):
    """The file is not read (not a regular file, too large, unsupported, an OS error); `reason` is its audit reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_fd(path: Path, flags: int) -> int:
    """os.open, as a seam: tests replace it to simulate permission errors when running as root."""
    return os.open(path, flags)


def read_capped(path: Path, cap: int, follow_symlinks: bool = False) -> bytes:
    """The whole content of a regular file of at most `cap` bytes; otherwise raise `Unreadable`."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = open_fd(path, flags)
    except OSError as exc:
        if exc.errno is not None and os.path.islink(path) and not follow_symlinks:
            raise Unreadable("symlink") from None
        raise Unreadable(f"unreadable: {exc.strerror or exc.__class__.__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable("not_a_file")
        if st.st_size > cap:
            raise Unreadable("too_large")
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > cap:
            raise Unreadable("too_large")
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(f"unreadable: {exc.strerror or exc.__class__.__name__}") from None
    finally:
        os.close(fd)
