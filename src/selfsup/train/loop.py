"""The training loop: packed blocks in, checkpoints and metrics out.

A lean PyTorch loop, not the HF Trainer: AdamW (fused where available) with decoupled weight
decay on matrices only, warmup + cosine learning rate as a pure function of the step, gradient
accumulation and clipping, bf16 autocast where the hardware runs it, optional `torch.compile`.
It stops at the first of max_steps / max_tokens / max_minutes, or on SIGTERM / SIGINT after the
current step (with a checkpoint to resume from).

State lives in three places, all saved in each checkpoint: the weights and optimizer, the data
position (`DataOrder`: seed, epoch, cursor) and the global RNGs (dropout). Objective randomness
(which tokens to mask) is seeded from (seed, step, micro-batch), so it needs no saving at all.
Re-running the same command resumes from the newest checkpoint that verifies (a corrupt or
unfinished newer one is reported, removed, and its steps redone), so a run killed at any moment —
SIGKILL included — ends with the same weights as one that never stopped. A step whose loss or
gradient is not finite changes nothing and is counted (`guards.py`); `faults.py` holds the
test-only hooks that let the tests kill, poison or fill the disk at an exact place.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.config import Recipe, settings_hash
from selfsup.console import console, esc, say
from selfsup.errors import StageFailure, UsageError
from selfsup.manifest import MANIFEST, manifest_digest, read_manifest, write_json_atomic, write_manifest
from selfsup.models import build_model, count_parameters, load_base_for_training
from selfsup.models.attention import PACKED_DOCUMENT_ATTENTION, SHORT_BLOCK_ATTENTION, choose_attention
from selfsup.models.build import EMBEDDING_OBJECTIVES
from selfsup.models.chunked_loss import supports_chunked_head
from selfsup.models.fused_loss import use_fused_causal_loss
from selfsup.models.lora import unwrap_lora
from selfsup.models.param_groups import optimizer_param_groups
from selfsup.objectives import batch_rows, get_objective, labelled_tokens
from selfsup.objectives.clm import CausalLM
from selfsup.pack import TokenShards
from selfsup.pairs.rows import PairRows, pairs_dir, uses_pairs
from selfsup.tokens import load_tokenizer, special_ids
from selfsup.tokens.byte_lengths import token_byte_lengths
from selfsup.train import faults
from selfsup.train.checkpoint import CorruptCheckpoint, iter_checkpoints, load_checkpoint, save_checkpoint
from selfsup.train.data_order import DataOrder
from selfsup.train.replay import replay_shards_dir, training_blocks
from selfsup.train.distributed import World, check_split, close_world, full_grad_norm, init_world, peer_lost
from selfsup.train.guards import LossSpikeMonitor, NonFiniteGuard
from selfsup.train.hardware import (
    autocast,
    autocast_dtype,
    compiler_missing,
    flops_per_token,
    measured_matmul_peak,
    pick_device,
    reuse_freed_memory,
)
from selfsup.train.budget import DEFAULT_MAX_STEPS, Budget
from selfsup.train.tracking import MetricsLog
from selfsup.train.selection import FILE as SELECTION_FILE
from selfsup.train.selection import Selection, select_blocks
from selfsup.train.lr_search import AUTO, FALLBACK as FALLBACK_LR, STEPS as LR_SEARCH_STEPS
from selfsup.train.lr_search import restore_into, search_lr, snapshot

METRICS = "metrics.jsonl"


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; the step in flight finished and a checkpoint was saved."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(
            f"interrupted: saved {checkpoint} ({Path(checkpoint).name}). Run the same command again to resume "
            "from there (add --fresh to start over instead)."
        )
        self.checkpoint = checkpoint


def train_fingerprint(recipe: Recipe, shards_digest: str | None, tokenizer_digest: str | None) -> str:
    """What decides the weights: model, objective, optimisation settings and the data.

    Logging cadence, progress bars, thread count, the time budget and what is recomputed rather than
    kept (memory, not weights) are left out, so changing them neither invalidates a finished run nor
    blocks resuming one.
    """
    t = recipe.train.model_dump(
        exclude={"progress", "log_every", "eval_every", "eval_batches", "checkpoint_every_steps", "activation_checkpointing",
                 "activation_memory_budget", "checkpoint_every_minutes", "keep_checkpoints", "threads", "max_minutes",
                 "loss_spike_sigmas", "loss_spike_window", "parallel", "report_to"}
    )
    return settings_hash("train", recipe.model, recipe.objective, t, shards_digest, tokenizer_digest)


def run_fingerprint(recipe: Recipe, shards_dir: Path, tokenizer_dir: Path) -> str:
    """`train_fingerprint` of the artefacts on disk: the shards (and replay shards beside them) and tokenizer.

    One function for `selfsup run` and `selfsup train`, so a run started by one resumes with the other.
    """
    data_digest = manifest_digest(shards_dir)
    if recipe.train.replay_sources and recipe.train.replay_fraction > 0:
        data_digest = settings_hash(data_digest, manifest_digest(replay_shards_dir(Path(shards_dir))))
    if uses_pairs(recipe):
        data_digest = settings_hash(data_digest, manifest_digest(pairs_dir(shards_dir)))
    return train_fingerprint(recipe, data_digest, manifest_digest(tokenizer_dir))


@dataclass
class _Clock:
    """Seconds of training so far, carried across resumes."""

    before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started


def train(
    shards_dir: Path,
    tokenizer_dir: Path,
    run_dir: Path,
    recipe: Recipe,
    *,
    fingerprint: str,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train until a stop condition, checkpointing on the way; returns the run summary (run.json).

    Under torchrun every process calls this; rank 0 alone writes metrics, checkpoints and run.json.
    """
    world = init_world(recipe.train.parallel)
    quiet = console.quiet
    console.quiet = quiet or not world.is_main  # one voice: rank 0 speaks for the run
    try:
        with torch._functorch.config.patch(activation_memory_budget=_activation_budget(recipe.train)):
            return _train(world, shards_dir, tokenizer_dir, run_dir, recipe, fingerprint=fingerprint, fresh=fresh)
    except torch.distributed.DistError as exc:  # a collective inside DDP/FSDP found a peer gone
        raise peer_lost(exc) from exc
    finally:
        console.quiet = quiet
        close_world(world)


MEMORY_SAVING_BUDGET = 0.1  # activation_checkpointing, compiled: keep a tenth of the activations


def _activation_budget(cfg) -> float:
    """The share of a compiled step's activations kept for the backward (torch's min-cut partitioner
    recomputes the cheapest of the rest: norms and pointwise ops first, matmuls last).

    Measured on SmolLM2-135M at 8×512, compiled (bench/train_throughput.py --real-base and a phase
    probe): 1.0 keeps 6.2 GB at 745 tokens/s; 0.65 4.9 GB at 755; 0.5 4.4 GB at 700. The memory-saving
    mode keeps a tenth: 3.9 GB at 595 tokens/s, where recomputing whole layers (transformers'
    gradient checkpointing) gave 4.7 GB at 460. Process-wide in torch, so set only while training.
    """
    return MEMORY_SAVING_BUDGET if cfg.activation_checkpointing else cfg.activation_memory_budget


def _train(
    world: World, shards_dir: Path, tokenizer_dir: Path, run_dir: Path, recipe: Recipe, *, fingerprint: str, fresh: bool
) -> dict[str, Any]:
    cfg = recipe.train
    run_dir = Path(run_dir)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(world.local_rank)
    amp_dtype = autocast_dtype(cfg.precision, device)
    check_split(world, cfg.grad_accum, cfg.batch_size, recipe.objective.names)

    _require_finished_pack(Path(shards_dir))
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = special_ids(tokenizer)
    if uses_pairs(recipe):  # mined (query, positive, negative) rows instead of packed blocks (pairs/rows.py)
        data, val = PairRows(pairs_dir(shards_dir), "train"), PairRows(pairs_dir(shards_dir), "validation")
        val = val if len(val) > 0 else None
    else:
        data = training_blocks(shards_dir, cfg)  # the domain shards, mixed with replay text when asked (replay.py)
        val = _validation_shards(shards_dir)
    seq_len = data.seq_len
    vocab_size = max(len(tokenizer), data.vocab_size)

    auto_lr = cfg.lr == AUTO
    if auto_lr:  # the optimizer is built again for the chosen rate, before its first real step
        cfg = _with_peak_lr(cfg, FALLBACK_LR)
    t = _prepare_trainee(recipe, cfg, world, tokenizer_dir, ids, vocab_size, seq_len, device, amp_dtype)
    model, wrapped, optimizer, objective = t.model, t.wrapped, t.optimizer, t.objective
    n_params = t.n_params

    global_batch = cfg.batch_size * cfg.grad_accum
    tokens_per_step = global_batch * seq_len

    order = DataOrder(seed=cfg.seed, n_blocks=len(data))
    guard = NonFiniteGuard(limit=cfg.max_nonfinite_in_a_row)
    spikes = LossSpikeMonitor(window=cfg.loss_spike_window, sigmas=cfg.loss_spike_sigmas)
    step, tokens, clock = 0, 0, _Clock()
    last_ckpt, resumed = _resume_or_start(run_dir, model, optimizer, fingerprint, fresh, world)
    if resumed is not None:
        step, tokens = int(resumed["step"]), int(resumed["tokens"])
        order = DataOrder.from_state(resumed["data"])
        guard.load_state_dict(resumed)
        clock.before = float(resumed.get("elapsed_s", 0.0))
    if world.sum([step])[0] != step * world.size:
        raise StageFailure(f"the {world.size} processes resumed from different checkpoints; is {run_dir} on storage "
                           "every process sees? Run the same command again")
    if world.is_main:
        spikes.refill(_truncate_metrics(run_dir / METRICS, step))
    # metrics.jsonl, and the trackers in [train] report_to fed the same records (tracking.py)
    metrics = MetricsLog.open(run_dir / METRICS, cfg.report_to, recipe.model_dump(mode="json"),
                              step if resumed is not None else None, enabled=world.is_main)
    selection = _selection(run_dir, world, t, data, cfg, resumed, tokenizer, vocab_size, tokens_per_step, metrics)
    if selection is not None and resumed is None:  # the run's data order runs over the selected blocks
        order = DataOrder(seed=cfg.seed, n_blocks=len(selection.kept))

    say(
        f"[bold]train[/] {recipe.objective.label} · {n_params / 1e6:.2f}M parameters · {len(data)} blocks of "
        f"{seq_len} tokens · global batch {global_batch} · {device.type}"
        f"{' bf16' if amp_dtype is torch.bfloat16 else ' fp32'}{' · compiled' if t.compiled else ''}"
        f"{_ATTENTION_SAID.get(t.attention, '')}"
        f"{f' · {world.size} processes ({world.parallel})' if world.distributed else ''}"
        f"{' · chunked head loss' if t.chunked_head else ''}"
    )
    layers = getattr(model.config, "num_hidden_layers", 0)
    hidden = getattr(model.config, "hidden_size", 0)
    if recipe.model_objective in EMBEDDING_OBJECTIVES:  # no vocabulary head: the embedding table is a lookup
        lookup = model.get_input_embeddings().weight.numel()
        attended = recipe.objective.passage_tokens if uses_pairs(recipe) else seq_len
        flops_tok = flops_per_token(n_params - lookup, layers, hidden, attended)
    else:
        flops_tok = flops_per_token(n_params, layers, hidden, seq_len)
    peak = world.sum([measured_matmul_peak(device, amp_dtype) or 0.0])[0]  # the whole world's peak

    # Domain and general bits per byte on fixed samples, logged with val_loss (evaluation/during_training.py).
    from selfsup.evaluation.during_training import TradeoffProbe  # here: evaluation imports train

    tradeoff = TradeoffProbe.for_run(recipe, tokenizer, val, device, amp_dtype, vocab_size,
                                     enabled=world.is_main and world.parallel != "fsdp")
    eval_seconds = 0.0  # one evaluation on the way (trade-off probe + validation): priced into a time plan
    if step == 0 and tradeoff.samples:
        started = time.perf_counter()
        metrics.append({"step": 0, "tokens": 0, **tradeoff.measure(model)})  # the starting point
        eval_seconds = time.perf_counter() - started
    lr_search = (resumed or {}).get("lr_search")
    if auto_lr and lr_search is None:  # train/lr_search.py: a short range test from the base, then back to it
        lr_search = _search_peak_lr(t, world, cfg, data, tradeoff, clock)
        if world.is_main:
            write_json_atomic(run_dir / "lr_search.json", lr_search)
            metrics.append({"step": 0, "event": "lr_search", "lr": lr_search["chosen"]})
    if auto_lr:
        cfg = _with_peak_lr(recipe.train, lr_search["chosen"])
        if resumed is None:
            t.optimizer = optimizer = _adamw(model, cfg, device)  # fresh: the search's moments are not carried
    budget = Budget.from_config(cfg, tokens_per_step)  # the run's length and learning rate (budget.py)
    replan = budget.load_state_dict(resumed) if resumed else None
    if replan and world.is_main:
        say(f"[yellow]{esc(replan['reason'])}: the run's length is planned again")
        metrics.append({"step": step, **replan})
    say(f"[cyan]peak lr {cfg.lr:g}{' (lr = auto: ' + esc(lr_search['reason']) + ')' if lr_search else ''} · "
        f"{cfg.schedule} schedule, {budget.describe()}")
    stop_requested = _install_stop_handlers()
    last_save_time = time.monotonic()
    interval_tokens, interval_start = 0, time.perf_counter()
    tokens_per_s = 0.0
    time_up = False  # the time budget, agreed by all processes once per step

    def trainer_state() -> dict[str, Any]:
        return {
            "step": step, "tokens": tokens, "data": order.state_dict(), "elapsed_s": clock.elapsed(),
            "fingerprint": fingerprint, "objective": recipe.objective.name, "parameters": n_params,
            **guard.state_dict(), **budget.state_dict(), **({"lr_search": lr_search} if lr_search else {}),
        }

    def save() -> Path:
        nonlocal last_save_time, last_ckpt
        model_state, optimizer_state = world.full_states(model, optimizer)  # FSDP: every rank gathers
        path = run_dir / "checkpoints" / f"step-{step}"
        if world.is_main:
            path = save_checkpoint(run_dir, model=model, optimizer=optimizer, trainer_state=trainer_state(),
                                   fingerprint=fingerprint, keep=cfg.keep_checkpoints,
                                   model_state=model_state, optimizer_state=optimizer_state)
        world.barrier()  # nobody runs ahead of a checkpoint that may yet fail
        last_save_time, last_ckpt = time.monotonic(), path
        return path

    def saved_at_this_step() -> bool:
        return last_ckpt is not None and last_ckpt.name == f"step-{step}"

    def done() -> str | None:
        return budget.stop_reason(step) or ("max_minutes" if time_up else None)

    def plan_if_due(step_seconds: float) -> None:
        """Fix a time budget's step count once the first steps are timed, and again if the machine slows
        down before the cooldown; every rank takes rank 0's plan (budget.py)."""
        if budget.needs_plan():
            # validation runs eagerly, forward only: about half a compiled training step's time per row
            val_seconds = step_seconds * cfg.eval_batches * cfg.batch_size / (2 * global_batch) if val is not None else 0.0
            plan = budget.observe_step(step, step_seconds, clock.elapsed(), eval_seconds + val_seconds, cfg.eval_every,
                                       space_evaluations="eval_every" not in cfg.model_fields_set)
        else:
            plan = budget.check_pace(step, step_seconds, clock.elapsed())
        if world.distributed and budget.plan is not None:  # every rank checks at the same steps: agree on one plan
            budget.plan.total_steps = int(world.sum([budget.plan.total_steps if world.is_main else 0])[0])
        if plan is None:
            return
        say(f"[cyan]{esc(budget.describe())}")
        if world.is_main:
            metrics.append({"step": step, "event": "time_plan", **budget.state_dict()["time_plan"]})

    wrapped.train()
    # hardware.py: no page faults per step, for ~0.7 GB of kept heap on SmolLM2; not in memory-saving mode
    with _progress(cfg.progress) as progress, reuse_freed_memory(device, enabled=not cfg.activation_checkpointing):
        task = progress.add_task("train", total=1000, loss=float("nan"), tps=0.0, mfu=0.0, step=step)
        try:
            while (reason := done()) is None:
                faults.pause_point("step", step + 1)  # test-only hooks (faults.py): inert unless SELFSUP_TEST_* is set
                faults.kill_point(world.rank, step + 1)
                step_started = time.perf_counter()
                lr = budget.lr(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)  # embeddings: embedding_lr / lr (param_groups.py)
                indices, next_epoch, next_cursor = order.peek(global_batch)
                if selection is not None:
                    indices = selection.kept[indices]
                loss_value, grad_norm, applied = _optimizer_step(t, world, cfg, data, indices, step, guard)
                order.commit(next_epoch, next_cursor)
                step += 1
                tokens += tokens_per_step
                interval_tokens += tokens_per_step
                plan_if_due(time.perf_counter() - step_started)
                faults.sigterm_point(world.rank, step)
                # Decisions that depend on a clock or a signal are agreed, so no rank waits alone in a collective.
                stop_now, time_up, save_due = world.any(
                    stop_requested(),
                    cfg.max_minutes is not None and clock.elapsed() >= cfg.max_minutes * 60,
                    bool(cfg.checkpoint_every_minutes) and time.monotonic() - last_save_time > (cfg.checkpoint_every_minutes or 0) * 60,
                )

                spike = spikes.observe(loss_value)
                if spike:
                    say(f"[yellow]step {step}: loss spike, {loss_value:.3f} against {spike[0]:.3f} ± {spike[1]:.3f} "
                        f"over the last {len(spikes) - 1} steps; if this repeats, lower [train] lr")
                if world.is_main and (step % cfg.log_every == 0 or done() or not applied or spike):
                    now = time.perf_counter()
                    tokens_per_s = interval_tokens / max(now - interval_start, 1e-9)
                    interval_tokens, interval_start = 0, now
                    metrics.append({
                        "step": step, "loss": _finite_or_none(loss_value), "lr": lr, "tokens": tokens,
                        "tokens_per_s": tokens_per_s, "grad_norm": _finite_or_none(grad_norm),
                        "elapsed_s": clock.elapsed(), "mfu": tokens_per_s * flops_tok / peak if peak else None,
                        "skipped_nonfinite": guard.skipped_total,
                        **({"skipped": True} if not applied else {}), **({"loss_spike": True} if spike else {}),
                    })
                if guard.exhausted:
                    kept = f"the last good checkpoint, {last_ckpt}, is kept" if last_ckpt else "no checkpoint was saved"
                    raise StageFailure(
                        f"{guard.in_a_row} steps in a row (steps {step - guard.in_a_row + 1}-{step}) had a non-finite "
                        f"loss or gradient norm; stopping without saving ({kept}). Lower [train] lr, raise "
                        "warmup_steps or check the data, then run again (add --fresh to start over)."
                    )
                if val is not None and (step % budget.eval_every(cfg.eval_every) == 0 or done()):
                    val_loss = validation_loss(wrapped, objective, val, cfg, device, amp_dtype)
                    if world.is_main:
                        metrics.append({"step": step, "val_loss": val_loss, "tokens": tokens, **tradeoff.measure(model)})
                    wrapped.train()
                    interval_start = time.perf_counter()  # validation time is not training throughput
                progress.update(task, completed=1000 * _fraction(step, clock.elapsed(), cfg, budget.total_steps),
                                loss=loss_value, tps=tokens_per_s, step=step,
                                mfu=100 * tokens_per_s * flops_tok / peak if peak else 0.0)
                if stop_now:
                    raise Interrupted(save())
                if (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0) or save_due:
                    save()
        finally:
            _restore_stop_handlers()

    final = last_ckpt if saved_at_this_step() else save()
    metrics.close()
    elapsed = clock.elapsed()
    summary = {
        "objective": recipe.objective.name, "preset": None if recipe.model.base else recipe.model.preset,
        "base": str(recipe.model.base) if recipe.model.base else None,
        "parameters": n_params, "precision": "bf16" if amp_dtype is torch.bfloat16 else "fp32",
        "compile": t.compiled, "steps": step, "tokens": tokens, "elapsed_s": elapsed,
        "tokens_per_s": _mean_throughput(run_dir / METRICS), "flops_per_token": flops_tok,
        "matmul_peak_flops": peak, "device": device.type, "stopped_by": reason,
        "checkpoint": str(final.relative_to(run_dir)), "resumed_from_step": resumed["step"] if resumed else None,
        "skipped_nonfinite": guard.skipped_total, "schedule": cfg.schedule, "lr": cfg.lr, **budget.state_dict(),
        **({"lr_search": lr_search} if lr_search else {}),
        **({"mix": {"shares": dict(recipe.objective.mix), "micro_batches": t.objective.counts(
            torch.Generator().manual_seed(_mix(cfg.seed, s, m)) for s in range(step) for m in range(cfg.grad_accum))}}
           if recipe.objective.mix else {}),
        **({"selection": selection.summary()} if selection is not None else {}),
        "chunked_head_loss": t.chunked_head, "recipe": recipe.model_dump(mode="json", by_alias=True),
    }
    summary["mfu"] = summary["tokens_per_s"] * flops_tok / peak if peak else None
    summary["processes"], summary["parallel"] = world.size, world.parallel
    if world.is_main:
        write_json_atomic(run_dir / "run.json", summary)
        write_manifest(run_dir, stage="train", fingerprint=fingerprint,
                       extra={"steps": step, "tokens": tokens, "checkpoint": summary["checkpoint"]})
        say(
            f"[green]trained[/] {step} steps, {tokens:,} tokens in {elapsed:.0f}s "
            f"({summary['tokens_per_s']:,.0f} tokens/s, MFU {100 * (summary['mfu'] or 0):.0f}% of measured matmul peak)"
        )
    world.barrier()
    return summary


@dataclass
class _Trainee:
    """The model being trained and what one optimizer step needs: its DDP/FSDP wrapper (or itself),
    optimizer, objective and the loss function (compiled when asked), on `device` under `amp_dtype`."""

    model: torch.nn.Module
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    objective: Any
    loss_of: Any
    device: torch.device
    amp_dtype: torch.dtype | None
    n_params: int
    compiled: bool
    attention: str  # the attention form the model trains with (models/attention.py choose_attention)
    chunked_head: bool


_ATTENTION_SAID = {SHORT_BLOCK_ATTENTION: " (short-block attention)",
                   PACKED_DOCUMENT_ATTENTION: " · packed-document attention (no T×T mask)"}


def _prepare_trainee(recipe: Recipe, cfg, world: World, tokenizer_dir: Path, ids: dict, vocab_size: int, seq_len: int,
                     device: torch.device, amp_dtype) -> _Trainee:
    """Set-up: the base (or a preset from scratch), seeded so a resumed run rebuilds the same module, with
    the fastest pieces that give the same results here (compile, short-block attention, chunked head loss)."""
    torch.manual_seed(cfg.seed)
    if recipe.model.base is not None:
        model = load_base_for_training(recipe.model, recipe.model_objective, tokenizer_dir)  # + extension, LoRA
    else:
        model = build_model(
            recipe.model_objective, recipe.model.preset, vocab_size=vocab_size, seq_len=seq_len,
            special_ids=ids, dropout=recipe.model.dropout,
        )
    model.to(device)
    compile_ = compile_on(cfg, device)
    if compile_ and (missing := compiler_missing(device)):
        say(f"[yellow]\\[train] compile = true, but {esc(missing)}: training uncompiled (install g++ or set CXX to compile)")
        compile_ = False
    if cfg.activation_checkpointing and not compile_:  # compiled, the partitioner recomputes (_activation_budget)
        _checkpoint_activations(model)
    objective = get_objective(recipe.objective, ids, vocab_size, decoder=recipe.decoder)
    batchers = _clm_batchers(objective)
    attention = choose_attention(model, device, seq_len, compile_, cfg.batch_size,  # models/attention.py
                                 document_mask=bool(batchers) and all(c.document_mask for c in batchers))
    for clm in batchers if attention == PACKED_DOCUMENT_ATTENTION else ():
        clm.packed_attention = True  # batches carry the documents' bounds instead of a (B, 1, T, T) mask
    chunked_head = _use_chunked_head(objective, model, world)  # models/chunked_loss.py: no full-vocabulary logits
    if not chunked_head:
        use_fused_causal_loss(model, compile_)  # models/fused_loss.py: a backward without a logits-sized fill
    if hasattr(objective, "predict_masked_only"):  # mlm: the head on labelled rows only, where no wrapper is in the way
        objective.predict_masked_only = not world.distributed
    wrapped = world.wrap(model)  # DDP / FSDP2 around it under torchrun; `model` stays the plain module
    return _Trainee(
        model=model, wrapped=wrapped, optimizer=_adamw(model, cfg, device), objective=objective,
        loss_of=_loss_function(objective, wrapped, compile_=compile_, distributed=world.distributed),
        device=device, amp_dtype=amp_dtype, n_params=count_parameters(model), compiled=compile_,
        attention=attention, chunked_head=chunked_head,
    )


def _optimizer_step(t: _Trainee, world: World, cfg, data, indices: np.ndarray, step: int,
                    guard: NonFiniteGuard) -> tuple[float, float, bool]:
    """One update from the global batch `indices`: (mean loss, gradient norm, whether it was applied).

    This process runs its share of the step's rows (`World.my_pieces`: whole micro-batches, or rows of
    them), numbered globally, with masks drawn for the whole micro-batch from (seed, step, micro-batch):
    the data and masks do not depend on the world size. A piece of a micro-batch weighs its share of the
    micro-batch's labelled tokens. A non-finite loss or gradient changes no weight (`guards.py`); the
    batch counts as consumed either way.
    """
    pieces = world.my_pieces(cfg.grad_accum, cfg.batch_size)
    loss_scale = world.size / cfg.grad_accum  # ranks' gradients are averaged: this gives the global mean
    loss_sum = 0.0
    for micro, lo, hi in pieces:
        rows = indices[micro * cfg.batch_size : (micro + 1) * cfg.batch_size]
        blocks = torch.from_numpy(data.blocks(rows)).to(t.device)
        gen = torch.Generator(device="cpu").manual_seed(_mix(cfg.seed, step, micro))
        batch = {k: v.to(t.device) for k, v in t.objective.make_batch(blocks, gen).items()}
        share = 1.0
        if hi - lo < len(rows):  # rows of a micro-batch other processes share
            whole = labelled_tokens(t.objective, batch)
            batch = batch_rows(t.objective, batch, lo, hi)
            share = labelled_tokens(t.objective, batch) / max(whole, 1)
        with world.no_sync(t.wrapped, last_micro=(micro, lo) == pieces[-1][:2]):
            with autocast(t.device, t.amp_dtype):
                loss = faults.poison_loss(t.loss_of(batch), step + 1)
            (loss * (share * loss_scale)).backward()
        loss_sum += share * loss.detach().float().item()
        faults.pause_point("micro", step + 1, micro)
    loss_value = world.sum([loss_sum])[0] / cfg.grad_accum
    grad_norm = full_grad_norm(torch.nn.utils.clip_grad_norm_(
        t.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    ))
    applied = guard.check(loss_value, grad_norm)
    if applied:
        t.optimizer.step()
    else:
        say(f"[yellow]step {step + 1}: loss {loss_value} / grad norm {grad_norm} not finite; update "
            f"skipped ({guard.in_a_row} in a row, {guard.skipped_total} in all)")
    t.optimizer.zero_grad(set_to_none=True)
    return loss_value, grad_norm, applied


@torch.no_grad()
def validation_loss(module, objective, val: TokenShards, cfg, device, amp_dtype) -> float:
    """Mean loss over the first `eval_batches` validation micro-batches, with fixed masks; eager, so a
    compiled training loss is not compiled again for evaluation."""
    module.eval()
    n = min(len(val), cfg.eval_batches * cfg.batch_size)
    losses = []
    for start in range(0, n, cfg.batch_size):
        rows = np.arange(start, min(start + cfg.batch_size, n))
        blocks = torch.from_numpy(val.blocks(rows)).to(device)
        gen = torch.Generator(device="cpu").manual_seed(_mix(cfg.seed, -1, start))
        batch = {k: v.to(device) for k, v in objective.make_batch(blocks, gen).items()}
        with autocast(device, amp_dtype):
            losses.append(objective.compute_loss(module, batch).float().item())
    return float(np.mean(losses))


def _loss_function(objective, module: torch.nn.Module, *, compile_: bool, distributed: bool):
    """batch → the objective's loss on `module`, compiled when asked.

    In one process the whole loss is compiled as one graph around the model: the logits never
    leave it, so the backward needs no logits-sized zero gradient for an output nobody reads
    (5% of a tiny model's CPU step). Under DDP / FSDP the module itself is compiled, the form
    their hooks are built for.
    """
    if not compile_:
        return lambda batch: objective.compute_loss(module, batch)
    # What an earlier run in this process compiled (tests, a notebook) shares the lambda's code object: its
    # guards would be checked against this run's batches, and torch 2.13 raises KeyError explaining the
    # recompile when a batch's keys differ (the packed form has no attention_mask). Each run compiles its own;
    # inductor's on-disk cache keeps the recompile warm.
    torch._dynamo.reset()
    if distributed:
        forward = torch.compile(module)
        return lambda batch: objective.compute_loss(forward, batch)
    return torch.compile(lambda batch: objective.compute_loss(module, batch))


def _with_peak_lr(cfg, lr: float):
    """[train] with a numeric peak rate (lr = "auto" resolved)."""
    return cfg.model_copy(update={"lr": lr})


def _selection(run_dir: Path, world: World, t: _Trainee, data, cfg, resumed, tokenizer, vocab_size: int,
               tokens_per_step: int, metrics: MetricsLog) -> Selection | None:
    """[train] select: the blocks this run trains on (train/selection.py). Chosen once, by rank 0 from the
    base's scores, and saved; every other rank and every resume reads the saved choice."""
    if cfg.select == "none":
        return None
    if resumed is None and world.is_main:
        byte_lengths = token_byte_lengths(tokenizer)
        byte_lengths = np.pad(byte_lengths, (0, max(0, vocab_size - len(byte_lengths))))
        chosen = select_blocks(t.model, data, cfg, seed=cfg.seed, tokens_per_step=tokens_per_step,
                               default_steps=DEFAULT_MAX_STEPS, byte_lengths=byte_lengths,
                               eos_id=special_ids(tokenizer)["eos"], device=t.device, amp_dtype=t.amp_dtype)
        chosen.save(run_dir)
        metrics.append({"step": 0, "event": "selection", **chosen.summary()})
    world.barrier()
    selection = Selection.load(run_dir)
    if selection is None:
        raise StageFailure(f"[train] select is set but {run_dir / SELECTION_FILE} is missing, so the resumed run "
                           "cannot train on the blocks it chose; run again with --fresh")
    say(f"[cyan]{esc(selection.describe())}")
    return selection


def _search_peak_lr(t: _Trainee, world: World, cfg, data, tradeoff, clock: _Clock) -> dict[str, Any]:
    """lr = "auto": the range test of train/lr_search.py on this run's model, data and trade-off probe.

    Test batches come from a data order of their own (seed + 1), so the run's own order is untouched;
    every rank takes rank 0's choice (only rank 0 runs the probe)."""
    order = DataOrder(seed=cfg.seed + 1, n_blocks=len(data))
    global_batch = cfg.batch_size * cfg.grad_accum
    fixed = Budget.from_config(cfg, global_batch * data.seq_len).fixed_steps
    steps = max(2, min(LR_SEARCH_STEPS, (fixed or 10**9) // 30))
    batches = []
    for _ in range(steps):
        indices, epoch, cursor = order.peek(global_batch)
        order.commit(epoch, cursor)
        batches.append(indices)
    saved = snapshot(t.model)
    step_times: list[float] = []
    current: dict[str, Any] = {}

    def restore() -> None:
        restore_into(t.model, saved)
        current["optimizer"] = _adamw(t.model, cfg, t.device)

    def run_step(lr: float, i: int) -> None:
        started = time.perf_counter()
        for group in current["optimizer"].param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        _optimizer_step(dataclasses.replace(t, optimizer=current["optimizer"]), world, cfg, data, batches[i], i, NonFiniteGuard(limit=10**9))
        step_times.append(time.perf_counter() - started)

    def probe() -> dict[str, float]:
        scores = tradeoff.measure(t.model)
        t.wrapped.train()
        return scores

    def planned_steps() -> int:
        """The run's length: its fixed bound, or what the rest of its time budget holds at the test's step time."""
        if fixed is not None:
            return fixed
        timed = sorted(step_times[1:] or step_times)  # the first step compiles
        return max(1, int((cfg.max_minutes * 60 - clock.elapsed()) / timed[len(timed) // 2]))

    result = search_lr(run_step, restore, probe, steps=steps, planned_steps=planned_steps)
    result["chosen"] = world.sum([result["chosen"] if world.is_main else 0.0])[0]
    say("[cyan]lr = auto[/]: " + ", ".join(
        f"{r['lr']:g} → domain {r.get('domain_bpb', float('nan')):.4f}, general {r.get('general_bpb', float('nan')):.4f}"
        for r in result["candidates"]) + f"; chose {result['chosen']:g} ({result['reason']})")
    return result


def _checkpoint_activations(model: torch.nn.Module) -> None:
    """Recompute each layer's activations in the backward instead of keeping them (non-reentrant, so it
    composes with torch.compile and with LoRA's frozen inputs)."""
    target = unwrap_lora(model)
    if not getattr(target, "supports_gradient_checkpointing", False):
        raise UsageError(f"[train] activation_checkpointing: {type(target).__name__} does not support it; set it to false")
    target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _use_chunked_head(objective, model: torch.nn.Module, world: World) -> bool:
    """Give clm / fim the chunked head loss where the model qualifies and no DDP / FSDP wrapper must run."""
    target = getattr(objective, "clm", objective)  # fim, span on a decoder and a mix train with a clm inside
    if not hasattr(target, "chunked_head") or world.distributed or not supports_chunked_head(model):
        return False
    target.chunked_head = True
    return True


def compile_on(cfg, device: torch.device) -> bool:
    """`[train] compile` as set; unset, on for a GPU (where compiling costs seconds and pays for itself in a
    few steps) and off for a from-scratch CPU run (continued runs set it unless their time budget is short:
    config.py CONTINUE_COMPILE)."""
    return cfg.compile if "compile" in cfg.model_fields_set else cfg.compile or device.type == "cuda"


def _clm_batchers(objective) -> list[CausalLM]:
    """Every causal-LM batch maker of an objective: its own, and its parts' (fim, span on a decoder, a mix)."""
    found: list[CausalLM] = []
    for part in [objective, *getattr(objective, "parts", {}).values()]:
        for candidate in (part, getattr(part, "clm", None)):
            if isinstance(candidate, CausalLM) and not any(candidate is c for c in found):
                found.append(candidate)
    return found


def _adamw(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
    """Weight decay on matrices only (not norms, biases), embeddings at embedding_lr (models/param_groups.py);
    fused kernel where torch has one."""
    groups = optimizer_param_groups(model, cfg)
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def _resume_or_start(
    run_dir: Path, model, optimizer, fingerprint: str, fresh: bool, world: World | None = None
) -> tuple[Path | None, dict[str, Any] | None]:
    """Load the newest checkpoint that verifies and loads; (None, None) means start from step 0.

    Newer checkpoints that fail (corrupt, unfinished, not loadable) are reported with the reason
    and removed: their steps are redone, and left in place they would count towards
    `keep_checkpoints` and push good checkpoints out. With several processes every one loads
    the same checkpoint (a full state, whatever world size saved it); rank 0 alone removes files.
    """
    world = world or World()
    if fresh:
        if world.is_main:
            _clear_run(run_dir)
        world.barrier()
        return None, None
    chosen, state = _find_and_load(run_dir, model, optimizer, fingerprint, world)
    world.barrier()  # rank 0 may remove rejected checkpoints or clear the run only after all have read
    return chosen, state


def _find_and_load(run_dir: Path, model, optimizer, fingerprint: str, world: World):
    chosen, state, rejected = None, None, []
    for path, problem in iter_checkpoints(run_dir):
        if problem is None:
            manifest = json.loads((path / "MANIFEST.json").read_text())
            if manifest.get("fingerprint") != fingerprint:
                raise UsageError(
                    f"{run_dir} holds checkpoints made with other settings or data; pass --fresh to start over, "
                    "or choose another output directory"
                )
            try:
                state = load_checkpoint(path, model, optimizer, apply_states=world.load_states(model, optimizer))
                chosen = path
                break
            except CorruptCheckpoint as exc:
                problem = str(exc)
        say(f"[yellow]skipping checkpoint {esc(path)}: {esc(problem)}; removing it")
        rejected.append(path)
    if chosen is None:
        if world.is_main:
            _clear_run(run_dir)
        if rejected:
            say("[yellow]no usable checkpoint left; starting from step 0")
        return None, None
    for path in rejected if world.is_main else ():
        shutil.rmtree(path, ignore_errors=True)
    say(f"[cyan]resuming[/] from {esc(chosen)} (step {state['step']}, {state['tokens']:,} tokens)")
    return chosen, state


def _require_finished_pack(shards_dir: Path) -> None:
    """Train only on a pack that committed: its manifest exists and every listed file has its size.

    A pack killed half-way has no manifest (it is removed first and written last). Sizes, not
    sha256: hashing gigabytes of shards at every resume would make resuming expensive, and the
    fingerprint already ties the run to the manifest's digests.
    """
    manifest = read_manifest(shards_dir)
    if manifest is None or manifest.get("stage") != "pack":
        raise UsageError(
            f"{shards_dir} has no {MANIFEST} from a finished pack (an interrupted `selfsup pack` leaves none); "
            "run `selfsup pack` again"
        )
    for rel, meta in manifest.get("files", {}).items():
        path = shards_dir / rel
        if not path.is_file() or path.stat().st_size != meta.get("bytes"):
            raise UsageError(f"{path} is missing or changed since {shards_dir / MANIFEST} was written; run `selfsup pack` again")


def _clear_run(run_dir: Path) -> None:
    for name in ("checkpoints", METRICS, "run.json", "manifest.json"):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _validation_shards(shards_dir: Path) -> TokenShards | None:
    try:
        val = TokenShards(shards_dir, "validation")
    except UsageError:
        return None
    return val if len(val) > 0 else None


def _mix(seed: int, step: int, micro: int) -> int:
    """A distinct, reproducible generator seed per (seed, step, micro-batch)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, step + 1, micro]).generate_state(1)[0])


def _truncate_metrics(path: Path, step: int) -> list[float]:
    """Keep metric lines up to the resumed step, so every step appears exactly once; returns their losses.

    Rewritten to a temporary file and renamed, so a kill during the rewrite loses nothing.
    """
    if not path.exists():
        return []
    kept, losses = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if record.get("step", 0) <= step:
            kept.append(line)
            if "loss" in record:
                losses.append(record["loss"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, path)
    return losses


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN: a non-finite value is logged as null."""
    return x if math.isfinite(x) else None


def _mean_throughput(path: Path) -> float:
    rates = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        rec = json.loads(line)
        if "tokens_per_s" in rec:
            rates.append(rec["tokens_per_s"])
    rates = rates[len(rates) // 10 :] or rates  # skip warm-up steps (compile, allocator)
    return float(np.median(rates)) if rates else 0.0


def _fraction(step: int, elapsed: float, cfg, total_steps: int | None) -> float:
    parts = []
    if total_steps:
        parts.append(step / total_steps)
    if cfg.max_minutes:
        parts.append(elapsed / (cfg.max_minutes * 60))
    return min(1.0, max(parts) if parts else 0.0)


_stop_flag = {"set": False}
_previous_handlers: dict[int, Any] = {}


def _install_stop_handlers():
    """SIGTERM / SIGINT set a flag; the loop finishes the step, checkpoints and exits cleanly."""
    _stop_flag["set"] = False

    def handler(signum, frame):
        if _stop_flag["set"] and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the last checkpoint is still there)
        _stop_flag["set"] = True  # nothing else here: printing from a signal handler can deadlock

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            _previous_handlers[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    return lambda: _stop_flag["set"]


def _restore_stop_handlers() -> None:
    for sig, h in _previous_handlers.items():
        signal.signal(sig, h)
    _previous_handlers.clear()


def _progress(enabled: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train[/] step {task.fields[step]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TextColumn("MFU {task.fields[mfu]:.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
