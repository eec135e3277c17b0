"""Spend the budget where the model can still learn: the base scores the training blocks first.

A continued-pretraining run on CPU sees a few hundred thousand tokens; a manual has millions. Not
every block is worth a step. Some the base already predicts well (licence headers, boilerplate,
prose it read in pretraining): training on them changes little. Some stay near random whatever
it learns (hashes, tables of numbers, base64). With `[train] select = "learnable"` the base
scores blocks before the first step, by bits per byte (so the score does not depend on how long
the tokens are), and the run leaves out the fifth it knows best and the 2% that look random.

Scoring costs a forward pass. To keep it to about a tenth of the budget, only the first
`SCORE_TOKENS` of a block are scored (in a seeded shuffle of the domain blocks, so the scored
blocks are a uniform sample), and scoring stops at the cost cap: a tenth of `max_minutes`, or
as many tokens as a tenth of the planned training would cost (a forward is about a third of a
training step). At 128 of 512 tokens that scores ~1.2× the blocks the run will train on, so
the blocks that pass (~0.94×) usually cover the budget: the run then trains on them alone (at
most `MAX_REPEATS` passes over them: up to ~4 epochs behave like fresh data, Muennighoff et al.
2023) and its whole budget goes to what was selected. Otherwise (a long budget on a large
corpus) it trains on every block but the ones left out, so a scoring cut short never shrinks a
corpus to a handful of blocks. Replay blocks are never scored or left out;
their share of the training blocks stays what `replay_fraction` says.

The selection is a pure function of the base, the shards and the settings, saved in the run
directory (`selection.safetensors`, with its summary in `run.json`), and read back on resume,
so a resumed run trains on the same blocks in the same order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.models.chunked_loss import target_nll
from selfsup.objectives.clm import CausalLM
from selfsup.train.data_order import epoch_permutation
from selfsup.train.hardware import autocast

SCORE_TOKENS = 128  # tokens scored per block: its first 128 (a quarter of a 512-token block's cost)
SCORE_BATCH = 16
COST_FRACTION = 0.1  # of the budget spent scoring, at most
KNOWN_QUANTILE = 0.2  # the fifth of the scored blocks the base predicts best is left out
RANDOM_QUANTILE = 0.98  # and the 2% it predicts worst (near random)
MAX_REPEATS = 2  # train on the passed blocks alone when the budget goes over them at most twice
FORWARD_SHARE = 1 / 3  # a forward pass, as a share of a training step's cost per token
FILE = "selection.safetensors"


@dataclass
class Selection:
    """Which training blocks the run trains on (`kept`, ascending indices into the block source) and why."""

    kept: np.ndarray
    scored: np.ndarray  # block indices the base scored
    bits_per_byte: np.ndarray  # their scores, in the same order
    known_below: float  # left out: bits/byte below this (the base knows them)
    random_above: float  # left out: bits/byte above this (near random)
    n_blocks: int  # training blocks before selection (domain + replay)
    only_scored: bool  # the run trains on the scored blocks that passed (and replay), not on every other block
    seconds: float

    def summary(self) -> dict:
        left_known = int((self.bits_per_byte < self.known_below).sum())
        left_random = int((self.bits_per_byte > self.random_above).sum())
        return {
            "scored": len(self.scored), "blocks": self.n_blocks, "kept": len(self.kept),
            "left_out_known": left_known, "left_out_random": left_random,
            "known_below_bpb": self.known_below, "random_above_bpb": self.random_above,
            "scored_median_bpb": float(np.median(self.bits_per_byte)) if len(self.scored) else None,
            "only_scored": self.only_scored, "seconds": self.seconds, "score_tokens": SCORE_TOKENS,
        }

    def describe(self) -> str:
        s = self.summary()
        where = "the scored blocks that passed" if self.only_scored else "every block but those left out"
        return (f"select: the base scored {s['scored']:,} of {s['blocks']:,} blocks in {s['seconds']:.0f}s; left out "
                f"{s['left_out_known']} it already predicts (< {s['known_below_bpb']:.3f} bits/byte) and "
                f"{s['left_out_random']} near random (> {s['random_above_bpb']:.3f}); training on {where} "
                f"({s['kept']:,} blocks)")

    def save(self, run_dir: Path) -> None:
        from safetensors.numpy import save_file

        meta = {"known_below": repr(self.known_below), "random_above": repr(self.random_above),
                "n_blocks": str(self.n_blocks), "only_scored": str(int(self.only_scored)), "seconds": repr(self.seconds)}
        tmp = Path(run_dir) / (FILE + ".tmp")
        save_file({"kept": self.kept.astype(np.int64), "scored": self.scored.astype(np.int64),
                   "bits_per_byte": self.bits_per_byte.astype(np.float32)}, tmp, metadata=meta)
        tmp.replace(Path(run_dir) / FILE)

    @classmethod
    def load(cls, run_dir: Path) -> Selection | None:
        from safetensors import safe_open

        path = Path(run_dir) / FILE
        if not path.exists():
            return None
        with safe_open(path, framework="np") as f:
            meta = f.metadata()
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        return cls(kept=arrays["kept"], scored=arrays["scored"], bits_per_byte=arrays["bits_per_byte"],
                   known_below=float(meta["known_below"]), random_above=float(meta["random_above"]),
                   n_blocks=int(meta["n_blocks"]), only_scored=meta["only_scored"] == "1", seconds=float(meta["seconds"]))


def scoring_limits(cfg, tokens_per_step: int, default_steps: int) -> tuple[int | None, float | None]:
    """(training tokens the budget plans, seconds the scoring may take): a step or token budget fixes the
    tokens, a time budget the seconds (`select_blocks` estimates its tokens from the scoring speed)."""
    planned = []
    if cfg.max_steps is not None:
        planned.append(cfg.max_steps * tokens_per_step)
    if cfg.max_tokens is not None:
        planned.append(cfg.max_tokens)
    if not planned and cfg.max_minutes is None:
        planned.append(default_steps * tokens_per_step)
    seconds = COST_FRACTION * cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    return (min(planned) if planned else None), seconds


def score_blocks(model: torch.nn.Module, data, candidates: np.ndarray, byte_lengths: np.ndarray, eos_id: int,
                 device: torch.device, amp_dtype, max_blocks: int | None, seconds: float | None) -> tuple[np.ndarray, float]:
    """Bits per byte of the first SCORE_TOKENS of each candidate block under `model`, in order, until
    `max_blocks` or `seconds` run out: (scores of the blocks scored, which are candidates[:len(scores)];
    tokens scored per second)."""
    limit = len(candidates) if max_blocks is None else min(len(candidates), max_blocks)
    causal = CausalLM(eos_id)  # the same document masking as training
    was_training = model.training
    model.eval()
    scores: list[np.ndarray] = []
    started = time.perf_counter()
    for start in range(0, limit, SCORE_BATCH):
        rows = candidates[start : min(start + SCORE_BATCH, limit)]
        blocks = torch.from_numpy(np.asarray(data.blocks(rows), dtype=np.int64)[:, : SCORE_TOKENS + 1])
        batch = causal.make_batch(blocks[:, :-1])
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        targets = blocks[:, 1:]
        with autocast(device, amp_dtype):
            nll = target_nll(model, inputs, targets.to(device)).float().sum(dim=1).cpu().numpy()
        n_bytes = byte_lengths[targets.numpy()].sum(axis=1)
        scores.append(nll / (math.log(2) * np.maximum(n_bytes, 1)))
        if seconds is not None and time.perf_counter() - started >= seconds:
            break
    model.train(was_training)
    elapsed = time.perf_counter() - started
    out = np.concatenate(scores) if scores else np.zeros(0)
    return out, len(out) * SCORE_TOKENS / max(elapsed, 1e-9)


def select_blocks(model, data, cfg, *, seed: int, tokens_per_step: int, default_steps: int, byte_lengths: np.ndarray,
                  eos_id: int, device, amp_dtype) -> Selection:
    """Score a uniform sample of the domain blocks with the base and decide which blocks the run trains on."""
    started = time.perf_counter()
    n_domain = getattr(data, "n_domain", len(data))
    planned_tokens, seconds = scoring_limits(cfg, tokens_per_step, default_steps)
    per_block = FORWARD_SHARE * min(SCORE_TOKENS, data.seq_len)  # a scored block's cost in training tokens
    max_blocks = math.ceil(COST_FRACTION * planned_tokens / per_block) if planned_tokens else None
    candidates = epoch_permutation(seed, 0, n_domain)  # seeded and shuffled: any prefix is a uniform sample
    bpb, score_rate = score_blocks(model, data, candidates, byte_lengths, eos_id, device, amp_dtype, max_blocks, seconds)
    scored = candidates[: len(bpb)]
    if len(bpb) == 0:
        return Selection(np.arange(len(data)), scored, bpb, -math.inf, math.inf, len(data), False,
                         time.perf_counter() - started)
    known_below, random_above = (float(x) for x in np.quantile(bpb, [KNOWN_QUANTILE, RANDOM_QUANTILE]))
    passed = scored[(bpb >= known_below) & (bpb <= random_above)]
    if planned_tokens is None:  # a time budget: what training will get through, from the scoring speed
        planned_tokens = cfg.max_minutes * 60 * (1 - COST_FRACTION) * score_rate * FORWARD_SHARE
    needed = math.ceil(planned_tokens / data.seq_len)  # blocks the budget trains on
    only_scored = len(passed) * MAX_REPEATS >= needed
    if only_scored:
        domain = np.sort(passed)
    else:
        left_out = np.setdiff1d(scored, passed)
        domain = np.setdiff1d(np.arange(n_domain), left_out)
    kept = np.concatenate([domain, _replay_rows(data, len(domain))])
    return Selection(kept, scored, bpb.astype(np.float32), known_below, random_above, len(data), only_scored,
                     time.perf_counter() - started)


def _replay_rows(data, n_domain_kept: int) -> np.ndarray:
    """Replay block indices in the same share of the kept blocks as `replay_fraction` gives the whole set."""
    n_replay = len(data) - getattr(data, "n_domain", len(data))
    if n_replay == 0:
        return np.zeros(0, dtype=np.int64)
    fraction = data.fraction
    want = min(n_replay, max(1, round(n_domain_kept * fraction / (1 - fraction))))
    return data.n_domain + (np.arange(want) * n_replay // want)
