"""Where each stage's artefact lives inside a work directory (see DESIGN.md, "Work directory"),
and the lock that lets one process at a time write it."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfsup.console import esc, say
from selfsup.errors import UsageError


@dataclass(frozen=True, slots=True)
class Workdir:
    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def base(self) -> Path:
        """A GGUF base model imported into a plain HF directory."""
        return self.root / "base"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def pairs(self) -> Path:
        """(query, passage, hard negative) rows for contrastive training (pairs/rows.py)."""
        return self.root / "pairs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval.json"

    @property
    def canaries(self) -> Path:
        """The audit's planted secrets (audit/canaries.py): beside the corpus, never exported."""
        return self.root / "canaries.json"

    @property
    def audit_json(self) -> Path:
        return self.root / "audit.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"


# ---------------------------------------------------------------- one writer at a time

LOCK_FILE = ".selfsup.lock"


class WorkdirBusy(UsageError):
    """Another process is writing this work directory (exit code 2)."""


@contextmanager
def writer_lock(root: Path, command: str, *, wait: bool = False) -> Iterator[dict[str, Any]]:
    """Hold the work directory's writer lock for the `with` block; yields the holder record written.

    An OS lock (`flock` on WORKDIR/.selfsup.lock), not a PID file: the kernel drops it when its
    process ends, however it ends, so a lock left by a killed run is simply free for the next one.
    The file also records who holds it (pid, host, since, command), for the message a second
    writer prints. Readers (`compare`, `report`) never take it. `wait=True` queues behind the
    holder instead of stopping with WorkdirBusy.
    """
    import fcntl  # POSIX; selfsup runs on Linux and macOS

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(read_holder(path))
            if not wait:
                raise WorkdirBusy(f"{root} is being written by {holder}; let it finish, or add --wait to start when it "
                                  "does (reading it with `selfsup compare` or `selfsup report` needs no lock)") from None
            say(f"[yellow]waiting[/] for {esc(holder)} to finish with {esc(root)} …")
            fcntl.flock(fd, fcntl.LOCK_EX)
        left = read_holder(path)
        if left:  # released by the kernel, not by its holder: that process ended without cleaning up
            say(f"[yellow]taking over[/] {esc(root)} from {esc(describe_holder(left))}, which ended without releasing it; "
                "every stage checks its output, so unfinished work is redone or resumed")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield record
        finally:
            os.ftruncate(fd, 0)  # an empty file: released in good order
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_holder(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_holder(record: dict[str, Any]) -> str:
    if not record:
        return "another process"
    return (f"process {record.get('pid', '?')} on {record.get('host', '?')} since {record.get('since', '?')} "
            f"({record.get('command', 'selfsup')})")
