"""Fault injection for the kill-and-resume tests. TEST-ONLY: inert unless a SELFSUP_TEST_* variable is set.

The tests that kill training for real (tests/test_resume_story.py, tests/train/) need the kill,
the NaN or the full disk to land at an exact place, not "somewhere, if the timing is lucky". Each
hook reads one environment variable, so none of this is part of the recipe or the fingerprint, and
an unset variable costs a dictionary lookup. Steps are numbered as in metrics.jsonl and in
`step-N/`: step N is the N-th optimizer step, counting from 1.

    SELFSUP_TEST_PAUSE_AT=step@3        before step 3 starts
                          micro@7.1     after micro-batch 1 of step 7 (inside gradient accumulation)
                          save@6        inside the save of step-6, after the weights are written
        prints `SELFSUP_TEST_PAUSED <where>` on stderr, then sleeps SELFSUP_TEST_PAUSE_SECONDS
        (default 300) so that the test can kill the process right there.
    SELFSUP_TEST_NAN_AT_STEPS=3,5-7,9-  the loss of these steps becomes NaN (`9-`: every step from 9 on)
    SELFSUP_TEST_ENOSPC_AT_SAVE=6       the save of step-6 fails with ENOSPC after the weights are written
    SELFSUP_TEST_KILL_RANK_AT=1@4       the process of rank 1 SIGKILLs itself before step 4 (a lost machine)
    SELFSUP_TEST_SIGTERM_AT=0@4         the process of rank 0 gets SIGTERM after step 4 (a scheduler's stop,
                                        seen by one rank only)
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch

PAUSED = "SELFSUP_TEST_PAUSED"


def pause_point(kind: str, step: int, micro: int | None = None) -> None:
    """Announce and sleep if SELFSUP_TEST_PAUSE_AT names this place."""
    want = os.environ.get("SELFSUP_TEST_PAUSE_AT")
    if not want:
        return
    where = f"{kind}@{step}" if micro is None else f"{kind}@{step}.{micro}"
    if want != where:
        return
    print(f"{PAUSED} {where}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("SELFSUP_TEST_PAUSE_SECONDS", "300")))


def kill_point(rank: int, step: int) -> None:
    """SIGKILL this process if SELFSUP_TEST_KILL_RANK_AT names this rank and step."""
    if os.environ.get("SELFSUP_TEST_KILL_RANK_AT") == f"{rank}@{step}":
        print(f"SELFSUP_TEST_KILLED rank {rank} before step {step}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def sigterm_point(rank: int, step: int) -> None:
    """Send this process SIGTERM if SELFSUP_TEST_SIGTERM_AT names this rank and step."""
    if os.environ.get("SELFSUP_TEST_SIGTERM_AT") == f"{rank}@{step}":
        os.kill(os.getpid(), signal.SIGTERM)


def poison_loss(loss: torch.Tensor, step: int) -> torch.Tensor:
    """The loss, or NaN if SELFSUP_TEST_NAN_AT_STEPS lists this step (the NaN reaches the gradients too)."""
    spec = os.environ.get("SELFSUP_TEST_NAN_AT_STEPS")
    if spec and _in_steps(spec, step):
        return loss * float("nan")
    return loss


def disk_full_point(step: int, path: Path) -> None:
    """Raise ENOSPC, as a full disk would, if SELFSUP_TEST_ENOSPC_AT_SAVE names this save."""
    if os.environ.get("SELFSUP_TEST_ENOSPC_AT_SAVE") == str(step):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@lru_cache(maxsize=8)
def _parse_steps(spec: str) -> tuple[tuple[int, float], ...]:
    ranges = []
    for part in spec.split(","):
        lo, dash, hi = part.strip().partition("-")
        ranges.append((int(lo), float("inf") if dash and not hi else float(hi or lo)))
    return tuple(ranges)


def _in_steps(spec: str, step: int) -> bool:
    return any(lo <= step <= hi for lo, hi in _parse_steps(spec))
