"""Long blocks: peak memory and speed of a training step as the block grows, at a fixed token count.

The same decoder trains on the same number of tokens a step (`--tokens`, 8,192) cut into blocks of
T = 512 … 8,192 tokens (batch = tokens / T), document-masked, two ways, each T and way in a process
of its own so its peak RSS is its own:

- `masked`: transformers' SDPA with the (B, 1, T, T) document mask selfsup built before
  (objectives/clm.py document_causal_mask): B·T² mask entries a step, plus what SDPA makes of them;
- `packed`: the packed-document form (models/attention.py): the documents' bounds only.

With a fixed token count the activations are the same at every T, so what grows with T is attention's
own cost: a T×T mask grows as tokens·T, the packed form not at all beyond the longer documents' own
scores (none kept: SDPA's CPU kernel is flash-style). The blocks are the real corpus of bench/lift.py
(sqlite3-doc) packed at each T with the base's tokenizer, so the documents' lengths are real.

    python bench/long_blocks.py --quick               # tiny preset: 512, 2048, 8192 (~3 minutes)
    python bench/long_blocks.py --real-base --quick   # SmolLM2-135M: 512, 2048, 8192 (~12 minutes)
    python bench/long_blocks.py --real-base           # SmolLM2-135M: 512 … 8192
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import CACHE, emit, train_ours

from selfsup.config import Recipe

WAYS = ("masked", "packed")


def shards_at(seq_len: int) -> dict[str, Path]:
    """The sqlite3-doc corpus of bench/lift.py packed at `seq_len` with SmolLM2's tokenizer (cached)."""
    from lift import prepare

    from selfsup.pack import pack_corpus

    paths = prepare("sqlite")
    shards = CACHE / "long-blocks" / f"shards-{seq_len}"
    if not (shards / "manifest.json").exists():
        recipe = Recipe()
        recipe.pack.seq_len = seq_len
        pack_corpus(paths["corpus"], paths["tokenizer"], shards, recipe.pack, "bench")
    return {**paths, "shards": shards}


def one_side(way: str, seq_len: int, tokens: int, steps: int, real_base: bool) -> dict:
    """Train `steps` steps of `tokens` tokens in blocks of `seq_len`, attention forced to `way`."""
    import selfsup.models.attention as attention
    from lift import peak_rss_gb

    attention.PACKED_MIN_TOKENS_CPU = 0 if way == "packed" else 10**9
    paths = shards_at(seq_len)
    model = {"base": str(paths["base"])} if real_base else {"preset": "tiny"}
    recipe = Recipe.model_validate({
        "model": model, "objective": {"name": "clm"},
        "train": {"max_steps": steps, "batch_size": tokens // seq_len, "progress": False, "eval_every": 10 * steps,
                  "checkpoint_every_minutes": None, "compile": False},
    })
    rate, _ = train_ours(paths["shards"], paths["tokenizer"], recipe, skip=1)  # the first step warms the allocator
    return {"tokens_per_s": rate, "peak_rss_gb": peak_rss_gb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-base", action="store_true", help="SmolLM2-135M instead of the tiny preset")
    parser.add_argument("--quick", action="store_true", help="T = 512, 2048, 8192 only")
    parser.add_argument("--tokens", type=int, default=8192, help="tokens a step, at every T")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--side", nargs=2, metavar=("WAY", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(one_side(args.side[0], int(args.side[1]), args.tokens, args.steps, args.real_base)))
        return
    lengths = [512, 2048, 8192] if args.quick else [512, 1024, 2048, 4096, 8192]
    model = "SmolLM2-135M" if args.real_base else "tiny preset"
    print(f"clm {model}, {args.tokens:,} tokens a step, document-masked, cpu, eager, {args.steps} steps each")
    shards_at(lengths[0])  # the corpus and base, prepared once before anything is timed
    results: dict[str, dict[str, dict]] = {way: {} for way in WAYS}
    for seq_len in lengths:
        for way in WAYS:
            command = [sys.executable, __file__, "--side", way, str(seq_len), "--tokens", str(args.tokens),
                       "--steps", str(args.steps)] + (["--real-base"] if args.real_base else [])
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = results[way][str(seq_len)] = json.loads(out.strip().splitlines()[-1])
            print(f"  T={seq_len:<5} {way:<7} {r['tokens_per_s']:9,.0f} tokens/s   peak RSS {r['peak_rss_gb']:.2f} GB",
                  flush=True)
    first, last = str(lengths[0]), str(lengths[-1])
    growth = {way: results[way][last]["peak_rss_gb"] / results[way][first]["peak_rss_gb"] for way in WAYS}
    at_longest = {
        "tokens_per_s": results["packed"][last]["tokens_per_s"] / results["masked"][last]["tokens_per_s"],
        "peak_rss": results["packed"][last]["peak_rss_gb"] / results["masked"][last]["peak_rss_gb"],
    }
    print(f"  peak RSS at T={last} over T={first}: masked {growth['masked']:.2f}x, packed {growth['packed']:.2f}x")
    print(f"  packed vs masked at T={last}: {at_longest['tokens_per_s']:.2f}x tokens/s, {at_longest['peak_rss']:.2f}x peak RSS")
    emit({"bench": "long_blocks", "model": model, "tokens_per_step": args.tokens, "steps": args.steps, "sides": results,
          "peak_rss_growth": growth, "packed_vs_masked_at_longest": at_longest})


if __name__ == "__main__":
    main()
