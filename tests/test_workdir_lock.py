"""One writer per work directory: a second writer is refused (or queues with --wait), naming the
holder; a lock left by a killed process is taken over. Real processes, a real OS lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from selfsup.workdir import LOCK_FILE, WorkdirBusy, read_holder, writer_lock
from tests.conftest import write_reference_docs

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from selfsup.workdir import writer_lock
    with writer_lock(Path(sys.argv[1]), "test holder", wait=len(sys.argv) > 2):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 120)
    print("released", flush=True)
""")


def start_holder(workdir: Path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir), *extra], stdout=subprocess.PIPE, text=True)
    if not extra:
        assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_who_holds_it_and_readers_need_no_lock(tmp_path: Path):
    """`selfsup run` on a directory another process writes stops at once with exit status 2 and
    says which process, on which host, since when; the holder is untouched."""
    holder = start_holder(tmp_path / "work")
    try:
        recipe = tmp_path / "r.toml"
        recipe.write_text(f'[corpus]\nsources = ["{tmp_path / "docs"}"]\n')
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "selfsup", "run", str(recipe), "--workdir", str(tmp_path / "work")],
                              capture_output=True, text=True, timeout=120)
        out = done.stdout + done.stderr
        assert done.returncode == 2, out
        assert f"process {holder.pid} on {socket.gethostname()} since" in out and "test holder" in out and "--wait" in out
        assert time.perf_counter() - started < 60
        assert holder.poll() is None and read_holder(tmp_path / "work" / LOCK_FILE)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_with_wait_the_second_writer_starts_when_the_first_is_done(tmp_path: Path):
    first = start_holder(tmp_path / "work")
    waiter = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "work"), "0"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert waiter.poll() is None, "the waiter must not get the lock while the first holds it"
        first.send_signal(signal.SIGTERM)  # the first ends (its lock goes with it)
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0 and out.split() == ["held", "released"]
    finally:
        first.kill()
        waiter.kill()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path, capsys):
    """SIGKILL gives no chance to clean up: the record stays, the OS lock does not; the next writer
    takes over, says so, and records itself."""
    holder = start_holder(tmp_path / "work")
    with pytest.raises(WorkdirBusy):
        with writer_lock(tmp_path / "work", "second"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert read_holder(tmp_path / "work" / LOCK_FILE)["pid"] == holder.pid  # the stale record is still there
    with writer_lock(tmp_path / "work", "after the kill") as record:
        assert record["pid"] == os.getpid()
        assert json.loads((tmp_path / "work" / LOCK_FILE).read_text())["command"] == "after the kill"
    said = capsys.readouterr()
    assert "taking over" in said.out + said.err
    assert (tmp_path / "work" / LOCK_FILE).read_text() == ""  # released in good order: nothing stale left


@pytest.mark.slow
def test_two_real_runs_on_one_work_directory_one_wins_and_finishes(tmp_path: Path):
    """The race a user hit: a second `selfsup run` one second after the first on the same --workdir
    used to fail half-way in the other's files. Now it stops at once and the first finishes."""
    docs = write_reference_docs(tmp_path / "docs", n=40)
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent(f"""
        [corpus]
        sources = ["{docs}"]
        validation_fraction = 0.1
        [tokenizer]
        vocab_size = 400
        [pack]
        seq_len = 64
        [train]
        max_steps = 6
        batch_size = 4
        compile = false
        progress = false
        [eval]
        max_documents = 4
        max_tokens = 800
        samples = 1
        sample_tokens = 4
    """))
    cmd = [sys.executable, "-m", "selfsup", "run", str(recipe), "--workdir", str(tmp_path / "work")]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = tmp_path / "work" / LOCK_FILE
    deadline = time.time() + 60
    while not read_holder(lock) and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"process {first.pid}" in second.stdout + second.stderr
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert (tmp_path / "work" / "report.html").is_file() and lock.read_text() == ""
