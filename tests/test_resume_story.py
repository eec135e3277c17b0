"""Kill it for real: training, pack and ingest killed with SIGKILL (and SIGTERM) at chosen moments.

The training story launches `python -m selfsup train` again and again on the same run directory,
killing it before the first checkpoint, inside gradient accumulation, in the middle of a
checkpoint write, in a step that crosses an epoch boundary and at a random moment, and stopping it
once with SIGTERM. The final weights and optimizer state must equal an uninterrupted run's, bit for
bit, and metrics.jsonl must hold every step exactly once with the same numbers.

The kill points are made exact by the test-only hooks in `selfsup.train.faults`
(SELFSUP_TEST_PAUSE_AT): the process announces the place on stderr and sleeps until it is killed.

Each training launch is a real process running the real command-line entry point. To keep the
suite fast on two cores, launches are forked from one warm "fork server" that has already
imported torch and transformers (4-7 s per cold start otherwise) and has run no torch op yet, so
each child starts its own thread pools.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.manifest import MANIFEST, verify_manifest
from selfsup.train import find_latest
from selfsup.train.faults import PAUSED
from tests.conftest import small_recipe, write_reference_docs

pytestmark = pytest.mark.slow

MAX_STEPS = 16
GLOBAL_BATCH = 8  # batch_size 4 x grad_accum 2
RECIPE = f"""
[model]
dropout = 0.1

[objective]
name = "clm"

[train]
max_steps = {MAX_STEPS}
batch_size = 4
grad_accum = 2
warmup_steps = 2
eval_every = 5
eval_batches = 2
precision = "fp32"
checkpoint_every_steps = 3
progress = false
"""


class Launch:
    """A child process whose merged stdout/stderr is collected line by line as it runs."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SELFSUP_TEST_")}
        child_env.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
        child_env.update(env or {})
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if self.proc.poll() is not None:
                self._reader.join(5)
                if any(text in line for line in self.lines):
                    return
                raise AssertionError(f"process exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output}")
            time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.finish()

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


_FORK_SERVER = r"""
import json, os, sys
import selfsup.cli
import selfsup.train  # torch and transformers: imported once, inherited by every launch
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the launch: `selfsup ARGV` with its output in job["log"]
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.update(job["env"])
        sys.argv = ["selfsup", *job["argv"]]
        code = 0
        try:
            selfsup.cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (exc.code is not None)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class ForkServer:
    """Starts `selfsup` launches one at a time as forks of a warm process; see the module docstring."""

    def __init__(self, workdir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFSUP_TEST_")}
        env.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
        self.proc = subprocess.Popen([sys.executable, "-c", _FORK_SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.workdir, self.count = workdir, 0

    def launch(self, argv: list[str], env: dict[str, str] | None = None) -> Child:
        self.count += 1
        log = self.workdir / f"launch-{self.count}.log"
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env or {}, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return Child(self, int(self.proc.stdout.readline()), log)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class Child:
    """One launch: its pid, its output so far, and its exit code once it ended (negative: signal)."""

    def __init__(self, server: ForkServer, pid: int, log: Path) -> None:
        self.server, self.pid, self.log, self.returncode = server, pid, log, None

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output}")
            time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        os.kill(self.pid, sig)
        return self.finish()

    def finish(self) -> int:
        self.returncode = int(self.server.proc.stdout.readline())
        return self.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fork_server = ForkServer(tmp_path_factory.mktemp("launches"))
    yield fork_server
    fork_server.close()


def _train_argv(data: dict, run: Path) -> list[str]:
    return ["train", str(data["shards"]), "--tokenizer", str(data["tokenizer"]), "--out", str(run),
            "--config", str(data["recipe"])]


@pytest.fixture(scope="module")
def tiny_data(prepared, tmp_path_factory) -> dict:
    """A corpus of a few dozen blocks, so that 16 steps of 8 blocks cross several epoch boundaries."""
    from selfsup.ingest import ingest_sources
    from selfsup.pack import TokenShards, pack_corpus

    root = tmp_path_factory.mktemp("tiny")
    docs = write_reference_docs(root / "docs", n=8, max_chars=700)
    recipe = small_recipe([docs])
    ingest_sources([docs], root / "corpus", recipe.corpus)
    pack_corpus(root / "corpus", prepared["tokenizer"], root / "shards", recipe.pack, "fp-pack-tiny")
    (root / "recipe.toml").write_text(RECIPE)
    n_blocks = len(TokenShards(root / "shards", "train"))
    assert 2 * GLOBAL_BATCH < n_blocks < MAX_STEPS * GLOBAL_BATCH / 3  # several epochs in the run
    return {"shards": root / "shards", "tokenizer": prepared["tokenizer"], "recipe": root / "recipe.toml",
            "n_blocks": n_blocks}


def _epoch_ending_steps(n_blocks: int) -> list[int]:
    """Steps (1-based) whose batch holds the last block of an epoch (and maybe the first of the next)."""
    return [s for s in range(1, MAX_STEPS + 1) if (s * GLOBAL_BATCH) // n_blocks != ((s - 1) * GLOBAL_BATCH) // n_blocks]


def _deterministic_metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields (throughput, elapsed, MFU)."""
    drop = {"tokens_per_s", "elapsed_s", "mfu"}
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]


def _state(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    latest, problems = find_latest(run)
    assert latest is not None and latest.name == f"step-{MAX_STEPS}", (latest, problems)
    return {name: load_file(latest / name) for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors")}


def test_killed_again_and_again_ends_with_the_uninterrupted_weights(server, tiny_data, tmp_path):
    """Five SIGKILLs and one SIGTERM at chosen moments, resumed each time by re-running the same
    command: the final weights, optimizer and RNG states equal an uninterrupted run's bit for bit,
    and metrics.jsonl holds every step (training and validation) exactly once, with equal values."""
    reference = server.launch(_train_argv(tiny_data, tmp_path / "straight"))
    assert reference.finish() == 0, reference.output

    run = tmp_path / "killed"
    argv = _train_argv(tiny_data, run)
    log: list[str] = []

    def kill_at(where: str, sig: int = signal.SIGKILL, pause: float = 300) -> Child:
        launch = server.launch(argv, {"SELFSUP_TEST_PAUSE_AT": where, "SELFSUP_TEST_PAUSE_SECONDS": str(pause)})
        launch.wait_for(f"{PAUSED} {where}")
        code = launch.kill(sig)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), launch.output
        log.append(where)
        return launch

    # 1. Before the first checkpoint (checkpoints come every 3 steps): nothing to resume.
    first = kill_at("step@3")
    assert not (run / "checkpoints" / "step-3").exists()
    # 2. Inside gradient accumulation: micro-batch 0 of step 5 is backpropagated, micro-batch 1 not.
    second = kill_at("micro@5.0")
    assert "resuming" not in second.output and find_latest(run)[0].name == "step-3"
    # 3. In the middle of writing step-6: the weights are on disk, the manifest is not.
    third = kill_at("save@6")
    assert "resuming from" in third.output and "step-3" in third.output
    assert (run / "checkpoints" / "step-6.partial").is_dir() and find_latest(run)[0].name == "step-3"
    # 4. In a step whose batch ends one epoch and starts the next.
    crossing = next(s for s in _epoch_ending_steps(tiny_data["n_blocks"]) if 7 <= s <= MAX_STEPS - 4)
    fourth = kill_at(f"micro@{crossing}.1")
    assert "step-6.partial: an unfinished save" in fourth.output and "resuming from" in fourth.output
    assert not (run / "checkpoints" / "step-6.partial").exists()  # reported, removed, redone
    # 5. SIGTERM: finish the step, save, exit 0 and say how to resume.
    stop_at = crossing + 2
    fifth = kill_at(f"micro@{stop_at}.0", signal.SIGTERM, pause=3)
    assert "Run the same command again to resume" in fifth.output
    assert find_latest(run)[0].name == f"step-{stop_at}"
    # 6. A random moment after the resume has begun.
    rng = random.Random(os.environ.get("SELFSUP_TEST_SEED", "5"))
    sixth = server.launch(argv)
    sixth.wait_for("resuming from")
    time.sleep(rng.uniform(0.0, 1.5))
    sixth.kill()
    log.append("random")
    # 7. Run to the end.
    last = server.launch(argv)
    assert last.finish() == 0, last.output
    assert "resuming from" in last.output

    straight, resumed = _state(tmp_path / "straight"), _state(run)
    for name in straight:
        assert straight[name].keys() == resumed[name].keys()
        unequal = [k for k in straight[name] if not torch.equal(straight[name][k], resumed[name][k])]
        assert not unequal, f"{name} differs after kills at {log}: {unequal[:5]}"

    metrics, expected = _deterministic_metrics(run), _deterministic_metrics(tmp_path / "straight")
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, MAX_STEPS + 1))
    assert [m["step"] for m in metrics if "val_loss" in m] == [5, 10, 15, 16]
    assert metrics == expected
    summary = json.loads((run / "run.json").read_text())
    assert summary["steps"] == MAX_STEPS and verify_manifest(run)[0]


def test_sigterm_exits_cleanly_with_a_resumable_checkpoint(server, tiny_data, tmp_path):
    """SIGTERM in the middle of a step: exit code 0, a message saying how to resume, a checkpoint
    of the finished step that verifies, and a run that is not marked finished."""
    run = tmp_path / "run"
    launch = server.launch(_train_argv(tiny_data, run), {"SELFSUP_TEST_PAUSE_AT": "micro@2.1",
                                                         "SELFSUP_TEST_PAUSE_SECONDS": "3"})
    launch.wait_for(f"{PAUSED} micro@2.1")
    assert launch.kill(signal.SIGTERM) == 0, launch.output
    assert "interrupted: saved" in launch.output and "step-2" in launch.output
    assert "Run the same command again to resume" in launch.output
    latest, problems = find_latest(run)
    assert latest.name == "step-2" and not problems
    assert not (run / MANIFEST).exists()  # the run is not finished, so nothing downstream trusts it


# --- data stages: a killed ingest or pack leaves no manifest, so the pipeline redoes it ---------

_PAUSE_AFTER_SECOND_CALL = """
import sys, time
from pathlib import Path
import {module} as target
original = target.{attr}
calls = []
def paused(*args, **kwargs):
    result = original(*args, **kwargs)
    calls.append(1)
    if len(calls) == 2:
        print("{marker}", file=sys.stderr, flush=True)
        time.sleep(300)
    return result
target.{attr} = paused
"""


def _killed_midway(tmp_path: Path, patch: str, body: str) -> None:
    script = tmp_path / "driver.py"
    script.write_text(patch + "if __name__ == '__main__':\n" + textwrap.indent(textwrap.dedent(body), "    "))
    launch = Launch([sys.executable, str(script)])
    launch.wait_for("PAUSED_MIDWAY", timeout=60)
    assert launch.kill() == -signal.SIGKILL


def test_pack_killed_midway_leaves_no_manifest_and_is_redone(prepared, tmp_path):
    """A re-pack over a finished pack, SIGKILLed after its second shard file: the old manifest is
    already gone and no new one exists, so neither the pipeline nor `train` trusts the half-written
    shards; packing again produces a directory that verifies."""
    from selfsup.errors import UsageError
    from selfsup.pack import pack_corpus
    from selfsup.train import train

    out = tmp_path / "shards"
    recipe = small_recipe([prepared["docs"]])
    recipe.pack.shard_tokens = 64 * 40
    pack_corpus(prepared["corpus"], prepared["tokenizer"], out, recipe.pack, "fp-old")
    assert verify_manifest(out, "fp-old")[0]

    patch = _PAUSE_AFTER_SECOND_CALL.format(module="selfsup.pack.pack", attr="np.save", marker="PAUSED_MIDWAY")
    _killed_midway(tmp_path, patch, f"""
        from selfsup.config import PackConfig
        from selfsup.pack import pack_corpus
        pack_corpus(Path({str(prepared['corpus'])!r}), Path({str(prepared['tokenizer'])!r}), Path({str(out)!r}),
                    PackConfig(seq_len=64, shard_tokens=64 * 40), "fp-new")
        """)
    assert any(out.glob("train-*.npy")), "the kill should have left half-written output behind"
    assert not (out / MANIFEST).exists()
    ok, why = verify_manifest(out, "fp-new")
    assert not ok and "missing" in why
    with pytest.raises(UsageError, match="selfsup pack"):
        train(out, prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")

    pack_corpus(prepared["corpus"], prepared["tokenizer"], out, recipe.pack, "fp-new")
    assert verify_manifest(out, "fp-new")[0]


def test_ingest_failing_midway_leaves_no_manifest_and_is_redone(tmp_path, monkeypatch):
    """A re-ingest over a finished corpus that fails on its second Parquet write (a full disk,
    injected): the old manifest is already gone and no new one is written, so the stage is redone;
    ingesting again produces a corpus that verifies. (Pack, above, is killed for real; ingest runs
    sandboxed worker processes whose cold start would cost more than the test is worth.)"""
    import errno

    import pyarrow.parquet as pq

    from selfsup.errors import SelfsupError
    from selfsup.ingest import ingest_sources

    out = tmp_path / "corpus"
    docs = write_reference_docs(tmp_path / "docs", n=12, max_chars=500)
    recipe = small_recipe([docs])
    recipe.corpus.shard_documents = 3
    ingest_sources([docs], out, recipe.corpus, "fp-old")
    assert verify_manifest(out, "fp-old")[0]

    original, calls = pq.ParquetWriter.write_table, []

    def fails_second_time(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fails_second_time)
    with pytest.raises((SelfsupError, OSError)):
        ingest_sources([docs], out, recipe.corpus, "fp-new")
    monkeypatch.undo()
    assert len(calls) >= 2 and any(out.glob("documents/part-*.parquet")), "the failure should have left output behind"
    assert not (out / MANIFEST).exists()
    assert not verify_manifest(out, "fp-new")[0]

    ingest_sources([docs], out, recipe.corpus, "fp-new")
    assert verify_manifest(out, "fp-new")[0]
