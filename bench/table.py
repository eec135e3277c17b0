"""Every benchmark, run several times, summarised as one table of medians against the targets.

Each benchmark script measures ours against its baseline in one process and ends with a JSON
line; this runs each script `--runs` times (3 by default) one after the other, keeps those lines,
and prints a Markdown table: per figure the median over the runs (and the individual runs),
the baseline, the ratio, the target and whether the median meets it, under a line naming the
machine. Runs are sequential, never side by side: the scripts share the cores they measure.

    python bench/table.py --quick            # what `make bench` runs
    python bench/table.py --quick --runs 1   # a first look
    python bench/table.py --json out.json    # also keep every run's figures
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    """One row: where its number sits in a benchmark's JSON line and what it must reach."""

    name: str
    value: Callable[[dict], float]
    target: float | None
    ours: Callable[[dict], str]
    baseline: Callable[[dict], str]
    higher_is_better: bool = True


def _tok(x: float) -> str:
    return f"{x:,.0f} tok/s"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _trainer(r: dict, side: str) -> str:
    """The Trainer's rate, and the ratio a loop at 100% MFU would reach (clm only: mlm's head runs on
    the masked positions, so the formula's FLOPs overstate its work and no ceiling follows)."""
    rate = _tok(r["tokens_per_s"][f"trainer_{side}"])
    return rate if r["objective"] != "clm" else f"{rate}; at 100% MFU {r[f'ceiling_vs_trainer_{side}']:.2f}x"


def _train_rows(label: str) -> list[Figure]:
    ours = lambda r: _tok(r["tokens_per_s"]["ours"])  # noqa: E731
    return [
        Figure(f"{label}: vs HF Trainer defaults", lambda r: r["ratio_vs_trainer_default"], 3.0,
               ours, lambda r: _trainer(r, "default")),
        Figure(f"{label}: vs HF Trainer best (bf16 + compile)", lambda r: r["ratio_vs_trainer_best"], 1.25,
               ours, lambda r: _trainer(r, "best")),
        Figure(f"{label}: MFU", lambda r: r["mfu"], 0.5 if "small" in label else None,
               lambda r: _pct(r["mfu"]), lambda r: f"peak {r['matmul_peak_flops'] / 1e12:.2f} TFLOP/s"),
    ]


def _ingest_row(fmt: str) -> Figure:
    return Figure(
        f"ingest {fmt}: full stage / bare extractor", lambda r: r["formats"][fmt]["ratio"], 0.5,
        lambda r: f"{r['formats'][fmt]['docs_per_s']['ours']:,.0f} docs/s",
        lambda r: f"{r['formats'][fmt]['docs_per_s']['bare']:,.0f} docs/s",
    )


def _lift_rows(corpus: str) -> list[Figure]:
    """bench/lift.py: SmolLM2-135M continued on a Debian manual, ours against the HF Trainer script, same budget."""
    def side(r: dict, name: str) -> str:
        d = r["sides"][name]
        return f"{d['domain']:.4f} bpb ({100 * (r['lift'] if name == 'ours' else r['baseline_lift']):.1f}% lift), {d['tokens']:,} tokens"

    return [
        Figure(f"lift {corpus} (SmolLM2-135M): ours / Trainer script", lambda r: r["lift_ratio"], 2.0,
               lambda r: side(r, "ours"), lambda r: side(r, "baseline")),
        Figure(f"lift {corpus}: forgetting on general text", lambda r: r["forgetting"], 0.02,
               lambda r: _pct(r["forgetting"]), lambda r: _pct(r["baseline_forgetting"]), higher_is_better=False),
        Figure(f"lift {corpus}: tokens/s, ours / Trainer script", lambda r: r["tokens_per_s_ratio"], None,
               lambda r: _tok(r["sides"]["ours"]["tokens_per_s"]), lambda r: _tok(r["sides"]["baseline"]["tokens_per_s"])),
        Figure(f"lift {corpus}: peak RSS, ours / Trainer script", lambda r: r["peak_rss_ratio"], None,
               lambda r: f"{r['sides']['ours']['peak_rss_gb']:.1f} GB", lambda r: f"{r['sides']['baseline']['peak_rss_gb']:.1f} GB",
               higher_is_better=False),
    ]


def _objective_rows() -> list[Figure]:
    """bench/objectives.py: each decoder objective's adapted SmolLM2-135M against its base on its own task metric;
    all-MiniLM-L6-v2 adapted by contrastive (and by mlm then contrastive) against its base and BM25 (MRR, higher
    is better); from scratch, mlm's masked accuracy and T5's hidden-span bits/byte against their unigram
    baselines, and mlm's mean-pooled retrieval against clm's at the same budget. A part the run left out
    (--quick has no clm or scratch rows) gives no row."""
    def row(name: str) -> Figure:
        return Figure(f"objective {name} (SmolLM2-135M): task metric, adapted / base",
                      lambda r: r[name]["adapted"] / r[name]["base"], 1.0,
                      lambda r: f"{r[name]['adapted']:.4f} {r[name]['metric']}", lambda r: f"{r[name]['base']:.4f} (base)",
                      higher_is_better=False)

    def retrieval(name: str, label: str) -> list[Figure]:
        return [Figure(f"objective {label} (all-MiniLM-L6-v2): held-out MRR, adapted / {against}",
                       lambda r, k=key: r[name]["adapted"] / r[name][k], 1.0,
                       lambda r: f"{r[name]['adapted']:.3f} MRR", lambda r, k=key, a=against: f"{r[name][k]:.3f} ({a})")
                for key, against in (("base", "base"), ("bm25", "BM25"))]

    scratch = [
        Figure("from scratch (small): mlm masked accuracy / unigram", lambda r: r["scratch"]["adapted"] / r["scratch"]["base"], 1.0,
               lambda r: f"{r['scratch']['adapted']:.1%}", lambda r: f"{r['scratch']['base']:.1%} (unigram)"),
        Figure("from scratch (small): T5 hidden-span bits/byte / unigram",
               lambda r: r["scratch"]["t5_span_bpb"]["trained"] / r["scratch"]["t5_span_bpb"]["unigram"], 1.0,
               lambda r: f"{r['scratch']['t5_span_bpb']['trained']:.3f}", lambda r: f"{r['scratch']['t5_span_bpb']['unigram']:.3f} (unigram)",
               higher_is_better=False),
        Figure("from scratch (small): retrieval MRR, mlm / clm at the same budget",
               lambda r: r["scratch"]["models"]["retrieval_mrr"]["mlm"] / r["scratch"]["models"]["retrieval_mrr"]["clm"], None,
               lambda r: f"{r['scratch']['models']['retrieval_mrr']['mlm']:.3f} MRR (mlm)",
               lambda r: f"{r['scratch']['models']['retrieval_mrr']['clm']:.3f} (clm)"),
    ]
    return ([row(name) for name in ("clm", "fim", "span")] + retrieval("contrastive", "contrastive")
            + retrieval("mlm_then_contrastive", "mlm then contrastive") + [Figure(
                "objective mlm then contrastive / contrastive alone, same minutes: held-out MRR",
                lambda r: r["mlm_then_contrastive"]["adapted"] / r["contrastive"]["adapted"], None,
                lambda r: f"{r['mlm_then_contrastive']['adapted']:.3f} MRR", lambda r: f"{r['contrastive']['adapted']:.3f} (contrastive)")]
            + scratch)


def _real_base_rows() -> list[Figure]:
    """bench/train_throughput.py --real-base: SmolLM2-135M at 8x512 against the Trainer at its best."""
    def gb(side: str) -> Callable[[dict], str]:
        return lambda r: f"{_tok(r['sides'][side]['tokens_per_s'])}, {r['sides'][side]['peak_rss_gb']:.1f} GB"

    return [
        Figure("SmolLM2-135M 8x512: tokens/s vs Trainer best", lambda r: r["ours_vs_trainer_best"]["tokens_per_s"],
               1.25, gb("ours"), gb("trainer_best")),
        Figure("SmolLM2-135M 8x512: peak RSS vs Trainer best", lambda r: r["ours_vs_trainer_best"]["peak_rss"], 0.75,
               gb("ours"), gb("trainer_best"), higher_is_better=False),
        Figure("SmolLM2-135M 8x512: memory-saving peak RSS vs Trainer best",
               lambda r: r["ours_memory_saving_vs_trainer_best"]["peak_rss"], 0.5,
               gb("ours_memory_saving"), gb("trainer_best"), higher_is_better=False),
    ]


# (script arguments, rows). Quick mode adds --quick to each; the small preset rows always run 20 steps.
BENCHMARKS: list[tuple[list[str], list[Figure]]] = [
    (["train_throughput.py"], _train_rows("train clm tiny")),
    (["train_throughput.py", "--preset", "small", "--steps", "20"], _train_rows("train clm small")),
    (["train_throughput.py", "--objective", "mlm"], _train_rows("train mlm tiny")),
    (["pack_throughput.py"], [
        Figure("pack: vs datasets.map + group_texts", lambda r: r["ratio"], 3.0,
               lambda r: f"{r['mb_per_s']['ours']:.1f} MB/s", lambda r: f"{r['mb_per_s']['datasets_map']:.1f} MB/s"),
        Figure("pack: peak RSS, 10x corpus / 1x", lambda r: r["rss_growth"], 1.2,
               lambda r: f"{r['peak_rss_mb']['large']:.0f} MB", lambda r: f"{r['peak_rss_mb']['small']:.0f} MB",
               higher_is_better=False),
    ]),
    (["dedup_throughput.py"], [
        Figure("near-dup: vs datasketch MinHashLSH", lambda r: r["ratio"], 5.0,
               lambda r: f"{r['docs_per_s']['ours']:,.0f} docs/s, recall {r['recall']['ours']:.3f}",
               lambda r: f"{r['docs_per_s']['datasketch']:,.0f} docs/s, recall {r['recall']['datasketch']:.3f}"),
    ]),
    (["long_blocks.py"], [
        Figure("long blocks (tiny, 8k tokens a step): packed peak RSS, T=8192 / T=512",
               lambda r: r["peak_rss_growth"]["packed"], 1.2,
               lambda r: f"{r['sides']['packed']['8192']['peak_rss_gb']:.2f} GB at 8192",
               lambda r: f"{r['sides']['packed']['512']['peak_rss_gb']:.2f} GB at 512", higher_is_better=False),
        Figure("long blocks (tiny) T=8192: packed documents vs dense mask, tokens/s",
               lambda r: r["packed_vs_masked_at_longest"]["tokens_per_s"], 1.0,
               lambda r: _tok(r["sides"]["packed"]["8192"]["tokens_per_s"]),
               lambda r: _tok(r["sides"]["masked"]["8192"]["tokens_per_s"])),
    ]),
    (["train_throughput.py", "--real-base", "--steps", "8"], _real_base_rows()),
    (["lift.py", "--corpus", "sqlite"], _lift_rows("sqlite")),
    (["lift.py", "--corpus", "git"], _lift_rows("git")),
    (["objectives.py", "--corpus", "sqlite"], _objective_rows()),
    (["ingest_throughput.py"], [_ingest_row(f) for f in ("text", "html", "pdf", "docx")] + [
        Figure("ingest: peak RSS, 10x files / 1x", lambda r: r["rss_growth"], 1.2,
               lambda r: f"{r['peak_rss_mb']['large']['process']:.0f} MB",
               lambda r: f"{r['peak_rss_mb']['small']['process']:.0f} MB", higher_is_better=False),
    ]),
]


def run_once(args: list[str], quick: bool) -> dict:
    """Run one benchmark script, echo its output, return its final JSON line."""
    cmd = [sys.executable, str(HERE / args[0]), *args[1:], *(["--quick"] if quick else [])]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if "Warning" not in line and "warnings.warn" not in line]
    print("\n".join(lines[-12:]), flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed (exit {proc.returncode}); its output is above")
    return json.loads(next(line for line in reversed(lines) if line.startswith("{")))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, torch {torch.__version__}; "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")


def table(results: list[tuple[list[str], list[Figure], list[dict]]]) -> str:
    out = ["| benchmark | ours (median run) | baseline (median run) | ratio: median (runs) | target | met |",
           "|---|---|---|---|---|---|"]
    for _, figures, records in results:
        for fig in figures:
            try:
                values = [fig.value(r) for r in records]
            except KeyError:  # a part this run of the script left out
                continue
            median = statistics.median(values)
            middle = records[values.index(sorted(values)[len(values) // 2])]  # the run whose value is the median
            runs_text = " / ".join(f"{v:.2f}" for v in values)
            if fig.target is None:
                target, met = "", ""
            else:
                ok = median >= fig.target if fig.higher_is_better else median <= fig.target
                target, met = f"{'≥' if fig.higher_is_better else '≤'} {fig.target:g}", "yes" if ok else "no"
            out.append(f"| {fig.name} | {fig.ours(middle)} | {fig.baseline(middle)} | **{median:.2f}** ({runs_text}) "
                       f"| {target} | {met} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated script names to run (default: all)")
    parser.add_argument("--json", type=Path, help="write every run's JSON figures here")
    args = parser.parse_args()
    chosen = [(a, f) for a, f in BENCHMARKS if not args.only or a[0].removesuffix(".py") in args.only.replace(".py", "").split(",")]
    results = []
    for script_args, figures in chosen:
        records = [run_once(script_args, args.quick) for _ in range(args.runs)]
        results.append((script_args, figures, records))
    if args.json:
        args.json.write_text(json.dumps([{"command": a, "runs": r} for a, _, r in results], indent=1))
    print(f"\n{machine()}; {args.runs} run(s) of each, median shown\n")
    print(table(results))


if __name__ == "__main__":
    main()
