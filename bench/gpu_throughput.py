"""Training throughput on a GPU: our loop against the HF Trainer at its best, MFU, and the longest block.

Run as `python bench/train_throughput.py --device cuda` (or this file directly). Two models, random
weights in the shapes that matter (nothing to download on a GPU machine that reaches no hub):

- `gpt-125m`: a ~125M decoder, d = 768, 12 layers, 12 heads, SmolLM2's 49,152-token vocabulary;
- `smollm2-135m`: SmolLM2-135M's own shape (d = 576, 30 layers, 9 heads / 3 key-value heads, tied head).

Data: the sqlite3-doc corpus of bench/lift.py packed with SmolLM2's tokenizer at T = 2,048 (and longer
for the longest-block probe), prepared on a CPU machine by `--prepare DIR` and carried to the GPU
machine (`bench/gpu_check.sh`). Per model, each side in a process of its own:

- `trainer_best`: `transformers.Trainer`, bf16, SDPA, `torch_compile`, plain causal attention (what it
  does with packed blocks), batch 8 × 2,048;
- `ours`: `selfsup.train` on the same blocks and batch, its GPU defaults: bf16 autocast over fp32 master
  weights, fused AdamW, compiled, document-masked attention in the packed form (varlen flash).

MFU = tokens/s × (6·N + 12·L·d·T) / peak, against the bf16 matmul peak measured in the process
(8,192³ products) and against the datasheet's dense bf16 peak (`DATASHEET_BF16`). Then the longest
block that trains at batch 8 with our loop: T = 2,048 … 32,768, three steps each, until out of memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' datasheets.
DATASHEET_BF16 = {"H100 80GB HBM3": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12, "H200": 989e12,
                  "A100": 312e12, "L4": 121e12, "L40S": 362e12}
SHAPES = {
    "gpt-125m": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     num_key_value_heads=12, tie_word_embeddings=True),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, tie_word_embeddings=True),
}
LENGTHS = (2048, 4096, 8192, 16384, 32768)
BATCH = 8


def datasheet_peak(name: str) -> float | None:
    return next((v for k, v in DATASHEET_BF16.items() if k.lower() in name.lower()), None)


def prepare(out: Path, lengths=LENGTHS) -> None:
    """On the CPU machine: SmolLM2's tokenizer and the sqlite3-doc corpus packed at each T, into `out`."""
    from lift import prepare as prepare_lift

    from selfsup.config import Recipe
    from selfsup.pack import pack_corpus

    paths = prepare_lift("sqlite")
    shutil.copytree(paths["tokenizer"], out / "tokenizer", dirs_exist_ok=True)
    for seq_len in lengths:
        if not (out / f"shards-{seq_len}" / "manifest.json").exists():
            recipe = Recipe()
            recipe.pack.seq_len = seq_len
            pack_corpus(paths["corpus"], out / "tokenizer", out / f"shards-{seq_len}", recipe.pack, "bench")


def random_base(shape: str, tokenizer: Path, out: Path) -> Path:
    """A Llama-family decoder of `shape` with random weights and SmolLM2's tokenizer, as a base directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from selfsup.tokens import load_tokenizer

    if not (out / "config.json").exists():
        vocab = len(load_tokenizer(tokenizer))
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=vocab, max_position_embeddings=max(LENGTHS), rope_theta=100000.0,
                             bos_token_id=0, eos_token_id=0, **SHAPES[shape])
        LlamaForCausalLM(config).save_pretrained(out)
        for f in tokenizer.iterdir():
            shutil.copy(f, out / f.name)
    return out


def side(name: str, shape: str, data: Path, seq_len: int, steps: int) -> dict:
    """One side in this process: steady tokens/s and peak GPU memory."""
    from common import train_ours

    from selfsup.config import Recipe
    from selfsup.pack import TokenShards

    base = random_base(shape, data / "tokenizer", data / f"base-{shape}")
    shards = data / f"shards-{seq_len}"
    cuda = torch.cuda.is_available()  # the side runs on a CPU too, as a smoke test of the script
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if name == "trainer_best":
        from train_throughput import steady_rate, trainer_step_times
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="sdpa")
        stamps = trainer_step_times(model, TokenShards(shards, "train").blocks(np.arange(steps * BATCH)), BATCH, steps,
                                    learning_rate=1e-4, bf16=True, torch_compile=True, optim="adamw_torch_fused",
                                    dataloader_num_workers=2, use_cpu=not cuda)
        rate = steady_rate(stamps[1:], BATCH * seq_len)  # steady_rate leaves out the first 20%; and the first step
        n_params = sum(p.numel() for p in model.parameters())
    else:
        recipe = Recipe.model_validate({
            "model": {"base": str(base)}, "objective": {"name": "clm"},
            "train": {"max_steps": steps, "batch_size": BATCH, "progress": False, "eval_every": 10 * steps,
                      "checkpoint_every_minutes": None, "lr": 1e-4},
        })
        rate, summary = train_ours(shards, data / "tokenizer", recipe, skip=max(2, steps // 5))
        n_params = summary["parameters"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return {"tokens_per_s": rate, "peak_gpu_gb": peak, "parameters": n_params}


def longest_block(shape: str, data: Path) -> dict:
    """Our loop at batch 8 and T = 2,048 … until a length does not train (out of memory, or no data)."""
    results = {}
    for seq_len in LENGTHS:
        if not (data / f"shards-{seq_len}" / "manifest.json").exists():
            break
        run = subprocess.run([sys.executable, __file__, "--side", "ours", shape, str(seq_len), "--steps", "3",
                              "--data", str(data)], capture_output=True, text=True)
        if run.returncode != 0:
            results[str(seq_len)] = {"trains": False, "why": (run.stderr.strip().splitlines() or ["?"])[-1][:300]}
            break
        results[str(seq_len)] = {"trains": True, **json.loads(run.stdout.strip().splitlines()[-1])}
        print(f"  T={seq_len:<6} trains at batch {BATCH}: peak {results[str(seq_len)]['peak_gpu_gb']:.1f} GB", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(".gpu"), help="what --prepare wrote")
    parser.add_argument("--prepare", action="store_true", help="write --data on this (CPU) machine and stop")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--side", nargs=3, metavar=("SIDE", "SHAPE", "T"), help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.prepare:
        prepare(args.data)
        print(f"prepared {args.data}: carry it to the GPU machine")
        return
    if args.side:
        print(json.dumps(side(args.side[0], args.side[1], args.data, int(args.side[2]), args.steps)))
        return
    from selfsup.train.hardware import flops_per_token, measure_matmul_peak

    device = torch.device("cuda")
    name = torch.cuda.get_device_name()
    measured = measure_matmul_peak(device, torch.bfloat16, seconds=3.0)
    sheet = datasheet_peak(name)
    print(f"{name}: measured bf16 matmul peak {measured / 1e12:.0f} TFLOP/s, datasheet "
          f"{f'{sheet / 1e12:.0f}' if sheet else 'unknown'}; batch {BATCH} x 2048, {args.steps} steps")
    report = {"bench": "train_throughput_gpu", "device": name, "measured_peak": measured, "datasheet_peak": sheet,
              "models": {}}
    for shape, s in SHAPES.items():
        sides = {}
        for who in ("trainer_best", "ours"):
            run = subprocess.run([sys.executable, __file__, "--side", who, shape, "2048", "--steps", str(args.steps),
                                  "--data", str(args.data)], capture_output=True, text=True)
            if run.returncode != 0:
                sides[who] = {"error": run.stderr.strip()[-2000:]}
                print(f"  {shape} {who}: FAILED\n{run.stderr.strip()[-2000:]}", flush=True)
                continue
            r = sides[who] = json.loads(run.stdout.strip().splitlines()[-1])
            fpt = flops_per_token(r["parameters"], s["num_hidden_layers"], s["hidden_size"], 2048)
            r["mfu_measured"] = r["tokens_per_s"] * fpt / measured
            r["mfu_datasheet"] = r["tokens_per_s"] * fpt / sheet if sheet else None
            of_sheet = f", {r['mfu_datasheet']:.1%} of datasheet" if sheet else ""
            print(f"  {shape:<13} {who:<13} {r['tokens_per_s']:10,.0f} tokens/s  MFU {r['mfu_measured']:.1%} of measured"
                  f"{of_sheet}  peak {r['peak_gpu_gb']:.1f} GB", flush=True)
        if "tokens_per_s" in sides.get("ours", {}) and "tokens_per_s" in sides.get("trainer_best", {}):
            sides["ratio_vs_trainer_best"] = sides["ours"]["tokens_per_s"] / sides["trainer_best"]["tokens_per_s"]
            print(f"  {shape}: ours {sides['ratio_vs_trainer_best']:.2f}x the Trainer at its best", flush=True)
        report["models"][shape] = sides
    report["longest_block_batch_8"] = longest_block("gpt-125m", args.data)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common  # noqa: F401  (puts src/ on the path)

    main()
