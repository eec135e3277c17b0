"""Sandboxed work: jobs run in worker processes with a time and a memory limit, results in order.

Why not `concurrent.futures`: when a worker dies there (a parser's segfault, `os._exit`), the
whole pool breaks and every pending job fails with it, and a hung job cannot be stopped. Here
each worker runs one job at a time over its own pipe, so the parent always knows which job a
worker holds:

- a job past `timeout` seconds: its worker is killed (SIGKILL) → `timeout`;
- a worker that dies (segfault, abort, exit): → `parse_error: worker crashed (SIGSEGV)`, or
  `memory` when it was killed by SIGKILL that we did not send (the kernel's OOM killer);
- a job that exceeds the address-space limit (`RLIMIT_AS` = `memory_mb`) raises MemoryError in
  the worker, which the job function turns into `memory` itself.

A dead or killed worker is replaced by a fresh one; the run carries on. Workers are started
with `spawn` (no state inherited from the parent, no fork of a threaded process).

Workers start on demand: the first with the first job, another only when a job has waited
`grow_after` seconds for a free one, so a run of a few small files pays for one start, and a
large run soon has all `workers` busy.

Order: results come out in the order the jobs went in, whatever the number of workers, so the
output of a run does not depend on it. At most `window` jobs are held (in flight or finished and
waiting for an earlier one), which bounds the parent's memory.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

_END = object()


def _worker_main(conn: Connection, function: Callable[[Any, Any], Any], context: Any, memory_mb: int | None, prepare: Callable[[Any], None] | None) -> None:
    """A worker: limit memory, warm up, say ready, then answer jobs until told to stop (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if prepare is not None:
        prepare(context)  # imports and models load before the first job's clock starts
    if memory_mb:
        import resource

        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        result = function(context, job)
        del job
        conn.send(result)


class _Worker:
    def __init__(self, mp: Any, function: Callable, context: Any, memory_mb: int | None, prepare: Callable | None) -> None:
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_worker_main, args=(child, function, context, memory_mb, prepare), daemon=True)
        self.process.start()
        child.close()
        self.killed = False

    def kill(self) -> None:
        self.killed = True
        self.process.kill()
        self.process.join()
        self.conn.close()


class Sandbox:
    """`map` jobs through `function(context, job)` in `workers` processes; see the module docstring.

    `on_failure(job, reason)` makes the result of a job whose worker timed out or died.
    """

    def __init__(
        self,
        function: Callable[[Any, Any], Any],
        context: Any,
        on_failure: Callable[[Any, str], Any],
        *,
        workers: int,
        timeout: float,
        memory_mb: int | None,
        window: int | None = None,
        grow_after: float = 0.25,
        prepare: Callable[[Any], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.function, self.context, self.on_failure = function, context, on_failure
        self.workers, self.timeout, self.memory_mb = workers, timeout, memory_mb
        self.window = window or 4 * workers
        self.grow_after = grow_after
        self.prepare = prepare
        self._starting: list[_Worker] = []
        self._mp = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: dict[_Worker, tuple[int, Any, float]] = {}
        self.restarts = 0
        self.started = 0  # workers started, replacements included

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._idle:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.kill()
        for worker in [*self._busy, *self._starting]:
            worker.kill()
        self._idle, self._busy, self._starting = [], {}, []

    def map(self, items: Iterable[tuple[Any, Any]]) -> Iterator[Any]:
        """`items` are (job, None) to run, or (None, result) already done; results in item order."""
        source = iter(items)
        queued: deque[tuple[int, Any, float]] = deque()
        done: dict[int, Any] = {}
        taken = emitted = 0
        exhausted = False
        while True:
            while not exhausted and taken - emitted < self.window:
                item = next(source, _END)
                if item is _END:
                    exhausted = True
                    break
                job, ready = item
                if job is None:
                    done[taken] = ready
                else:
                    queued.append((taken, job, time.monotonic()))
                taken += 1
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1
            if exhausted and emitted == taken:
                return
            self._dispatch(queued)
            if self._busy or self._starting:
                self._collect(done, queued)

    def _dispatch(self, queued: deque[tuple[int, Any, float]]) -> None:
        running = len(self._busy) + len(self._starting) + len(self._idle)
        if queued and not self._idle and running < self.workers and (running == 0 or time.monotonic() - queued[0][2] >= self.grow_after):
            self._starting.append(_Worker(self._mp, self.function, self.context, self.memory_mb, self.prepare))
            self.started += 1
        while queued and self._idle:
            worker = self._idle.pop()
            seq, job, since = queued.popleft()
            try:
                worker.conn.send(job)
            except OSError:  # the idle worker died meanwhile: replace it, retry the job
                worker.kill()
                queued.appendleft((seq, job, since))
                continue
            self._busy[worker] = (seq, job, time.monotonic() + self.timeout)

    def _collect(self, done: dict[int, Any], queued: deque[tuple[int, Any, float]]) -> None:
        """Wait for the first worker to answer, die or run out of time (or for a reason to grow)."""
        now = time.monotonic()
        soonest = min([deadline for _, _, deadline in self._busy.values()], default=now + 60)
        if queued and len(self._busy) + len(self._starting) + len(self._idle) < self.workers:
            soonest = min(soonest, queued[0][2] + self.grow_after)
        workers = [*self._busy, *self._starting]
        handles = [w.conn for w in workers] + [w.process.sentinel for w in workers]
        ready = set(wait(handles, timeout=max(0.0, soonest - now)))
        now = time.monotonic()
        for worker in list(self._starting):
            if worker.conn in ready or worker.process.sentinel in ready:
                self._starting.remove(worker)
                try:
                    worker.conn.recv()  # "ready"
                except (EOFError, OSError):
                    worker.process.join()
                    raise RuntimeError(f"an extraction worker failed to start (exit code {worker.process.exitcode})") from None
                self._idle.append(worker)
        for worker, (seq, job, deadline) in list(self._busy.items()):
            if worker.conn in ready:
                try:
                    done[seq] = worker.conn.recv()
                except Exception:  # noqa: BLE001 (died mid-answer: a crash)
                    pass
                else:
                    del self._busy[worker]
                    self._idle.append(worker)
                    continue
            if worker.conn in ready or worker.process.sentinel in ready:
                worker.process.join()
                done[seq] = self.on_failure(job, _crash_reason(worker.process.exitcode))
            elif now >= deadline:
                worker.kill()
                done[seq] = self.on_failure(job, "timeout")
            else:
                continue
            del self._busy[worker]
            worker.conn.close()
            self.restarts += 1


def _crash_reason(exitcode: int | None) -> str:
    if exitcode == -signal.SIGKILL:
        return "memory"  # not sent by us: the kernel's OOM killer
    if exitcode is not None and exitcode < 0:
        try:
            return f"parse_error: worker crashed ({signal.Signals(-exitcode).name})"
        except ValueError:
            pass
    return f"parse_error: worker crashed (exit code {exitcode})"


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
