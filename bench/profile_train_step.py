"""Where a training step's time goes: torch.profiler over our compiled loop's step, kernel by kernel.

The profile behind the "what limits it" of bench/train_throughput.py. It runs the step the loop
runs (bf16 autocast, the objective's batch, the compiled loss with short-block attention and the
pointwise cross-entropy on the CPU, fused AdamW, clipping, the allocator setting), with
inductor's per-kernel profiling on so each fused kernel shows up by name, and prints the top
entries by self time, grouped into matmuls, attention, cross-entropy, other fused kernels.

    python bench/profile_train_step.py                 # clm, tiny preset
    python bench/profile_train_step.py --preset small
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch
import torch._inductor.config as inductor_config
from common import prepared_data
from torch.profiler import ProfilerActivity, profile

from selfsup.config import ObjectiveConfig
from selfsup.models import build_model
from selfsup.models.attention import use_short_block_attention
from selfsup.models.fused_loss import use_fused_causal_loss
from selfsup.objectives import get_objective
from selfsup.pack import TokenShards
from selfsup.tokens import load_tokenizer, special_ids
from selfsup.train.hardware import reuse_freed_memory


def part_of(name: str) -> str:
    """A profiler row's share: which part of the model it belongs to."""
    if name in ("aten::mm", "aten::addmm"):
        return "matmuls"
    if name == "aten::bmm" or "softmax_" in name and "log_softmax" not in name:
        return "attention (bmm + softmax)"
    if "log_softmax" in name or "logsumexp" in name or "arange" in name:
        return "cross-entropy"
    if name.startswith("graph_"):
        return "other fused kernels (norms, RoPE, SiLU, casts)"
    if "CompiledFxGraph" in name:
        return "compiled-graph wrapper"
    if name in ("aten::fill_", "aten::zero_"):
        return "zero fills"
    return "everything else (optimizer, clipping, data)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--objective", default="clm", choices=["clm", "mlm"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after 8 warm-up steps)")
    args = parser.parse_args()
    inductor_config.cpp.enable_kernel_profile = True  # each fused CPU kernel as its own profiler row

    data = prepared_data()
    tokenizer = load_tokenizer(data["tokenizer"])
    shards = TokenShards(data["shards"], "train")
    ids = special_ids(tokenizer)
    torch.manual_seed(0)
    model = build_model(args.objective, args.preset, vocab_size=len(tokenizer), seq_len=shards.seq_len, special_ids=ids)
    device = torch.device("cpu")
    use_short_block_attention(model, device, shards.seq_len, compiled=True)
    use_fused_causal_loss(model, compiled=True)
    objective = get_objective(ObjectiveConfig(name=args.objective), ids, len(tokenizer))
    if hasattr(objective, "predict_masked_only"):
        objective.predict_masked_only = True
    loss_of = torch.compile(lambda batch: objective.compute_loss(model, batch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step(i: int) -> None:
        rows = np.arange(i * args.batch, (i + 1) * args.batch) % len(shards)
        batch = objective.make_batch(torch.from_numpy(shards.blocks(rows)), torch.Generator().manual_seed(i))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with reuse_freed_memory(device):
        for i in range(8):
            step(i)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(8, 8 + args.steps):
                step(i)
        seconds = (time.perf_counter() - t0) / args.steps

    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows)
    parts: dict[str, float] = defaultdict(float)
    for name, t in rows:
        parts[part_of(name)] += t
    print(f"{args.objective} {args.preset}, batch {args.batch}x{shards.seq_len}: {seconds * 1000:.0f} ms per profiled step")
    for part, t in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {100 * t / total:5.1f}%  {part}")
    print("\ntop rows by self time:")
    for name, t in sorted(rows, key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * t / total:5.1f}%  {name[:90]}")


if __name__ == "__main__":
    main()
