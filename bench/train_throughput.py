"""Training throughput: our loop against the Hugging Face Trainer, same model, data and machine.

Three runs in one process on the same packed blocks of the sample corpus:

- `trainer_default`: `transformers.Trainer` at its defaults (fp32, eager), as run_clm/run_mlm users run it;
- `trainer_best`: the Trainer at its best settings here (bf16, torch.compile, packed blocks: no padding);
- `ours`: `selfsup.train` with its defaults for the objective (bf16 autocast where supported,
  document-masked attention for clm) plus `compile` unless `--no-compile`; compiled on the CPU
  that brings short-block attention (models/attention.py), the pointwise cross-entropy
  (models/fused_loss.py) and the reuse of freed memory (train/hardware.py).

Tokens/s are steady-state rates (the first 20% of steps, which include compilation, are left
out). MFU = tokens/s · FLOPs per token / matmul peak, where FLOPs per token = 6·N + 12·L·d·T
and the peak is a bf16 (or fp32) square matmul measured in this process. The ceiling line is
the ratio a loop at 100% MFU would reach: no loop can beat a baseline by more on this machine.

    python bench/train_throughput.py --quick            # tiny preset, ~2 minutes
    python bench/train_throughput.py --preset small     # the MFU target preset
    python bench/train_throughput.py --real-base        # SmolLM2-135M at 8x512: tokens/s and peak RSS (~15 min)
    python bench/train_throughput.py --device cuda      # on a GPU: ~125M and SmolLM2 shapes at 8x2048, MFU,
                                                        # the longest block (bench/gpu_throughput.py, gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from common import emit, prepared_data, train_ours

from selfsup.config import Recipe
from selfsup.models import PRESETS, build_model
from selfsup.pack import TokenShards
from selfsup.tokens import load_tokenizer, special_ids
from selfsup.train.hardware import autocast_dtype, flops_per_token, measure_matmul_peak, pick_device


def steady_rate(times: list[float], tokens_per_step: int) -> float:
    """Tokens/s over the steps after the first 20% (compile and allocator warm-up excluded)."""
    skip = max(1, len(times) // 5)
    span = times[-1] - times[skip - 1]
    return tokens_per_step * (len(times) - skip) / span


def run_trainer(data: dict, objective: str, preset: str, steps: int, batch: int, best: bool) -> float:
    """HF Trainer on the same blocks; returns steady-state tokens/s."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    tok = load_tokenizer(data["tokenizer"])
    shards = TokenShards(data["shards"], "train")
    blocks = shards.blocks(np.arange(min(len(shards), steps * batch)))
    torch.manual_seed(0)
    model = build_model(objective, preset, vocab_size=len(tok), seq_len=shards.seq_len, special_ids=special_ids(tok))

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            ids = torch.from_numpy(blocks[i % len(blocks)])
            return {"input_ids": ids, "labels": ids.clone()} if objective == "clm" else {"input_ids": ids}

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15) if objective == "mlm" else None
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps, use_cpu=not torch.cuda.is_available(),
            report_to=[], save_strategy="no", logging_steps=10_000, disable_tqdm=True, learning_rate=1e-3,
            bf16=best, torch_compile=best,
        )
        Trainer(model=model, args=args, train_dataset=Blocks(), data_collator=collator, callbacks=[Clock()]).train()
    return steady_rate(stamps, batch * shards.seq_len)


def run_ours(data: dict, objective: str, preset: str, steps: int, batch: int, compile_: bool,
             document_mask: bool = True) -> tuple[float, int]:
    recipe = Recipe()
    recipe.objective.name = objective
    recipe.objective.document_mask = document_mask
    recipe.model.preset = preset
    recipe.train.max_steps = steps
    recipe.train.batch_size = batch
    recipe.train.compile = compile_
    recipe.train.progress = False
    recipe.train.eval_every = 10 * steps  # no validation inside the timed window
    recipe.train.checkpoint_every_minutes = None
    rate, summary = train_ours(data["shards"], data["tokenizer"], recipe)
    return rate, summary["parameters"]


def trainer_step_times(model, blocks: np.ndarray, batch: int, steps: int, **training_args) -> list[float]:
    """The HF Trainer's clm steps on packed `blocks` (labels = inputs), no saving or logging in the way:
    the wall-clock time at the end of each step (after the GPU has finished it, on a GPU)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    stamps: list[float] = []

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            ids = torch.from_numpy(blocks[i].astype(np.int64))
            return {"input_ids": ids, "labels": ids.clone()}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, report_to=[],
                                 save_strategy="no", logging_steps=10_000, disable_tqdm=True, **training_args)
        Trainer(model=model, args=args, train_dataset=Blocks(), callbacks=[Clock()]).train()
    return stamps


# ---- the real base: SmolLM2-135M (49k vocabulary) at 8×512, each side in its own process for its peak RSS ----

REAL_SIDES = ("trainer_best", "ours", "ours_memory_saving")


def real_base_side(side: str, steps: int, batch: int) -> dict:
    """One side on SmolLM2-135M and the sqlite3-doc blocks of bench/lift.py: steady tokens/s and peak RSS (GB)."""
    from lift import peak_rss_gb, prepare

    paths = prepare("sqlite")
    if side == "trainer_best":
        from transformers import AutoModelForCausalLM

        shards = TokenShards(paths["shards"], "train")
        model = AutoModelForCausalLM.from_pretrained(paths["base"], dtype=torch.float32)
        stamps = trainer_step_times(model, shards.blocks(np.arange(steps * batch)), batch, steps, use_cpu=True,
                                    learning_rate=5e-5, bf16=True, torch_compile=True)
        return {"tokens_per_s": steady_rate(stamps, batch * shards.seq_len), "peak_rss_gb": peak_rss_gb()}
    recipe = Recipe.model_validate({
        "model": {"base": str(paths["base"])}, "objective": {"name": "clm"},
        "train": {"max_steps": steps, "batch_size": batch, "progress": False, "eval_every": 10 * steps,
                  "checkpoint_every_minutes": None, "activation_checkpointing": side == "ours_memory_saving"},
    })
    return {"tokens_per_s": train_ours(paths["shards"], paths["tokenizer"], recipe)[0], "peak_rss_gb": peak_rss_gb()}


def real_base(steps: int, batch: int) -> None:
    """The real-base row: SmolLM2-135M at batch×512, the Trainer at its best (bf16 + compile, plain causal
    attention) against our defaults (document masking on) and our memory-saving mode."""
    results = {}
    for side in REAL_SIDES:
        out = subprocess.run([sys.executable, __file__, "--real-base-side", side, "--steps", str(steps),
                              "--batch", str(batch)], check=True, capture_output=True, text=True).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
        print(f"  {side:<20} {results[side]['tokens_per_s']:8,.0f} tokens/s  peak RSS {results[side]['peak_rss_gb']:.2f} GB",
              flush=True)
    best = results["trainer_best"]
    ratios = {f"{side}_vs_trainer_best": {"tokens_per_s": results[side]["tokens_per_s"] / best["tokens_per_s"],
                                          "peak_rss": results[side]["peak_rss_gb"] / best["peak_rss_gb"]}
              for side in REAL_SIDES[1:]}
    for name, r in ratios.items():
        print(f"  {name}: {r['tokens_per_s']:.2f}x tokens/s, {r['peak_rss']:.2f}x peak RSS")
    emit({"bench": "train_throughput_real_base", "model": "SmolLM2-135M", "batch": batch, "seq_len": 512,
          "steps": steps, "sides": results, **ratios})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-base", action="store_true",
                        help="SmolLM2-135M at 8x512: our defaults vs the Trainer at its best, tokens/s and peak RSS")
    parser.add_argument("--real-base-side", choices=REAL_SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny preset, few steps (~2 minutes)")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--objective", default="clm", choices=["clm", "mlm"])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: the GPU benchmark of bench/gpu_throughput.py (its options follow)")
    args, rest = parser.parse_known_args()
    if args.device == "cuda":
        import gpu_throughput

        gpu_throughput.main(rest + (["--steps", str(args.steps)] if args.steps else []))
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.real_base_side:
        print(json.dumps(real_base_side(args.real_base_side, args.steps or 12, args.batch)))
        return
    if args.real_base:
        batch = args.batch if args.batch != 16 else 8
        print(f"clm SmolLM2-135M, batch {batch}x512, {args.steps or 12} steps, cpu")
        real_base(args.steps or 12, batch)
        return
    preset = args.preset or ("tiny" if args.quick else "small")
    steps = args.steps or (25 if args.quick else 60)
    data = prepared_data()
    device = pick_device()
    dtype = autocast_dtype("auto", device)
    peak = measure_matmul_peak(device, dtype, seconds=2.0)

    default = run_trainer(data, args.objective, preset, steps, args.batch, best=False)
    best = run_trainer(data, args.objective, preset, steps, args.batch, best=True)
    ours, n_params = run_ours(data, args.objective, preset, steps, args.batch, compile_=not args.no_compile)
    # The Trainer attends across document boundaries (plain causal); ours by default does not. The same
    # attention as the Trainer's separates the loop's own speed from the cost of document masking.
    plain = run_ours(data, args.objective, preset, steps, args.batch, compile_=not args.no_compile,
                     document_mask=False)[0] if args.objective == "clm" else ours

    p = PRESETS[preset]
    seq_len = TokenShards(data["shards"], "train").seq_len
    fpt = flops_per_token(n_params, p.layers, p.hidden, seq_len)
    mfu = ours * fpt / peak
    print(f"{args.objective} {preset} ({n_params / 1e6:.1f}M params), batch {args.batch}x{seq_len}, {steps} steps, {device.type}")
    print(f"  HF Trainer defaults   {default:10,.0f} tokens/s")
    print(f"  HF Trainer best       {best:10,.0f} tokens/s  (bf16 + torch.compile)")
    print(f"  selfsup               {ours:10,.0f} tokens/s  ({ours / default:.2f}x defaults, {ours / best:.2f}x best)")
    if args.objective == "clm":
        print(f"  selfsup, plain causal {plain:10,.0f} tokens/s  ({plain / default:.2f}x defaults, {plain / best:.2f}x best;"
              " attention across documents, as the Trainer)")
    # At 100% MFU our loop would run at peak / fpt tokens/s: the most any loop could beat the baselines by here.
    if args.objective == "mlm":
        print("  (mlm: ours runs the vocabulary head on the labelled 15% of positions only; MFU still counts the"
              " formula's FLOPs, so it reads high and the ceiling below is not one)")
    print(f"  ceiling: at 100% MFU, {peak / fpt / default:.2f}x defaults and {peak / fpt / best:.2f}x best")
    print(f"  MFU {mfu:.1%} of a measured {peak / 1e12:.2f} TFLOP/s {str(dtype or torch.float32).split('.')[-1]} matmul peak; "
          f"FLOPs/token = 6*N + 12*L*d*T = {fpt:.3g}")
    emit({
        "bench": "train_throughput", "objective": args.objective, "preset": preset, "device": device.type,
        "tokens_per_s": {"ours": ours, "ours_plain_causal": plain, "trainer_default": default, "trainer_best": best},
        "ratio_plain_causal_vs_trainer_best": plain / best,
        "ratio_vs_trainer_default": ours / default, "ratio_vs_trainer_best": ours / best, "mfu": mfu,
        "ceiling_vs_trainer_default": peak / fpt / default, "ceiling_vs_trainer_best": peak / fpt / best,
        "matmul_peak_flops": peak, "flops_per_token": fpt, "flops_formula": "6*N + 12*L*d*T",
    })


if __name__ == "__main__":
    main()
