"""The whole road from one recipe: ingest → tokenizer → pack → train → eval → export → report.

Each stage's output carries a fingerprint: a hash of its settings and of its inputs (the source
listing for ingest; the upstream artefacts' manifests for the rest). A stage whose output
verifies with the fingerprint it would have now is skipped; otherwise it runs, and since its
output then changes, so do the fingerprints of every stage after it. Nothing downstream ever
reads an artefact whose manifest does not verify.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfsup.audit.canaries import CanaryRequest, canaries_intact
from selfsup.audit.run import audit_fingerprint, run_audit
from selfsup.config import Recipe, apply_continue_defaults, settings_hash
from selfsup.console import esc, say
from selfsup.errors import ConfigError, StageFailure, UsageError
from selfsup.evaluation import evaluate, evaluate_fingerprint
from selfsup.evaluation.evaluate import read_eval
from selfsup.export import export_fingerprint, export_model
from selfsup.export.gguf import check_gguf_request
from selfsup.ingest import ingest_sources, source_fingerprint
from selfsup.manifest import file_sha256, manifest_digest, verify_manifest, write_json_atomic
from selfsup.pack import pack_corpus
from selfsup.pairs.rows import build_pairs, uses_pairs
from selfsup.report import build_report
from selfsup.tokens import train_tokenizer
from selfsup.tokens.extend import SAMPLE_CHARS as EXTEND_SAMPLE_CHARS
from selfsup.tokens.extend import FIM_SENTINELS, add_sentinels, extend_tokenizer, span_sentinels
from selfsup.tokens.train import RESERVED_TOKENS, reuse_tokenizer
from selfsup.train import run_fingerprint, train
from selfsup.train.replay import replay_shards_dir
from selfsup.train.tracking import log_results, require_trackers
from selfsup.workdir import Workdir

STAGES = ("ingest", "tokenizer", "pack", "train", "eval", "audit", "export", "report")
STATE_FILE = "pipeline.json"
RECIPE_FILE = "recipe.json"  # the recipe as given, before the base is resolved: what `selfsup rebase` reruns
LINEAGE_FILE = "lineage.json"  # which base (and its fingerprint) and which corpus the run's model comes from


def objective_sentinels(recipe: Recipe) -> list[str]:
    """The sentinels a reused decoder tokenizer must have for the run's objectives (added where missing):
    `<fim_*>` for fim, `<extra_id_N>` for span on a decoder base; none for a tokenizer selfsup trains
    (it reserves them all) or for other objectives."""
    if recipe.tokenizer.from_dir is None or not recipe.decoder:
        return []
    names = recipe.objective.names
    return (FIM_SENTINELS if "fim" in names else []) + (span_sentinels() if "span" in names else [])


def tokenizer_fingerprint(recipe: Recipe, corpus_digest: str | None) -> str:
    if objective_sentinels(recipe):
        return settings_hash(_reused_fingerprint(recipe, corpus_digest), "sentinels", objective_sentinels(recipe))
    return _reused_fingerprint(recipe, corpus_digest)


def _reused_fingerprint(recipe: Recipe, corpus_digest: str | None) -> str:
    if recipe.tokenizer.from_dir is not None:
        source = Path(recipe.tokenizer.from_dir) / "tokenizer.json"
        files_hash = file_sha256(source) if source.is_file() else str(recipe.tokenizer.from_dir)
        if recipe.tokenizer.extend:  # the added terms are mined from the corpus (tokens/extend.py)
            return settings_hash("tokenizer-from", str(recipe.tokenizer.from_dir), files_hash, "extend",
                                 recipe.tokenizer.extend, recipe.tokenizer.max_train_chars, corpus_digest)
        return settings_hash("tokenizer-from", str(recipe.tokenizer.from_dir), files_hash)
    # The reserved tokens are part of what the stage makes: a tokenizer trained before the
    # objectives' sentinels were reserved is retrained, not reused.
    return settings_hash("tokenizer", recipe.tokenizer, corpus_digest, RESERVED_TOKENS)


def pack_fingerprint(recipe: Recipe, corpus_digest: str | None, tokenizer_digest: str | None) -> str:
    return settings_hash("pack", recipe.pack.model_dump(exclude={"batch_documents"}), corpus_digest, tokenizer_digest)


def pairs_fingerprint(recipe: Recipe, corpus_digest: str | None, tokenizer_digest: str | None) -> str:
    o = recipe.objective
    return settings_hash("pairs", corpus_digest, tokenizer_digest, o.passage_tokens, recipe.train.seed, o.title_share)


def mine_pairs(corpus_dir: Path, tokenizer_dir: Path, out_dir: Path, recipe: Recipe, fingerprint: str) -> dict[str, Any]:
    return build_pairs(corpus_dir, tokenizer_dir, out_dir, passage_tokens=recipe.objective.passage_tokens,
                       seed=recipe.train.seed, fingerprint=fingerprint, title_share=recipe.objective.title_share)


def build_tokenizer(corpus_dir: Path, out_dir: Path, recipe: Recipe, fingerprint: str) -> dict[str, Any]:
    if objective_sentinels(recipe):  # the base's tokenizer (and mined terms), then the objectives' sentinels
        _build_tokenizer(corpus_dir, out_dir, recipe, "before-sentinels:" + fingerprint)
        return add_sentinels(out_dir, objective_sentinels(recipe), fingerprint)
    return _build_tokenizer(corpus_dir, out_dir, recipe, fingerprint)


def _build_tokenizer(corpus_dir: Path, out_dir: Path, recipe: Recipe, fingerprint: str) -> dict[str, Any]:
    if recipe.tokenizer.from_dir is not None and recipe.tokenizer.extend:
        # The copy's manifest gets a fingerprint of its own: if extending is interrupted, the stage is redone.
        reuse_tokenizer(recipe.tokenizer.from_dir, out_dir, fingerprint="before-extend:" + fingerprint)
        return extend_tokenizer(corpus_dir, out_dir, recipe.tokenizer.extend, fingerprint,
                                max_chars=min(EXTEND_SAMPLE_CHARS, recipe.tokenizer.max_train_chars))
    if recipe.tokenizer.from_dir is not None:
        return reuse_tokenizer(recipe.tokenizer.from_dir, out_dir, fingerprint=fingerprint)
    if recipe.tokenizer.extend:
        raise ConfigError(
            "[tokenizer] extend adds domain terms to a reused tokenizer; set [model] base (or [tokenizer] from), "
            "or remove extend to train a tokenizer on the corpus"
        )
    return train_tokenizer(corpus_dir, out_dir, recipe.tokenizer, fingerprint)


def run_pipeline(recipe: Recipe, workdir: Path, *, fresh: bool = False, nproc: int = 1,
                 keep_corpus: bool = False) -> dict[str, Any]:
    """Run every stage that is not already up to date; returns {stage: "ran" | "skipped"} and paths.

    `nproc` > 1 trains in that many processes (torchrun on this machine); the other stages run here.
    `keep_corpus`: a corpus already in the work directory is used as it is, even if the sources
    changed since (`selfsup rebase` copies one in so both runs score the same held-out documents).
    """
    if not recipe.corpus.sources:
        raise UsageError("[corpus] sources is empty; list the files or folders to learn from, e.g. sources = [\"docs/\"]")
    require_trackers(recipe.train.report_to)  # a missing tracker package stops here, not after training
    wd = Workdir(Path(workdir))
    wd.root.mkdir(parents=True, exist_ok=True)
    state_path = wd.root / STATE_FILE
    state = _read_state(state_path)
    status: dict[str, str] = {}
    write_json_atomic(wd.root / RECIPE_FILE, recipe.model_dump(mode="json", by_alias=True))

    def stage(name: str, fingerprint: str, is_done: Callable[[], bool], work: Callable[[], Any]) -> None:
        if not fresh and is_done():
            say(f"[dim]{name}: up to date, skipped")
            status[name] = "skipped"
            return
        started = time.perf_counter()
        say(f"[bold]{name}[/] …")
        work()
        state[name] = {"fingerprint": fingerprint, "seconds": time.perf_counter() - started}
        write_json_atomic(state_path, state)
        status[name] = "ran"

    def dir_done(path: Path, fingerprint: str) -> Callable[[], bool]:
        return lambda: verify_manifest(path, fingerprint)[0]

    # A work directory inside a source folder must not ingest its own output.
    exclude = [wd.root.resolve()]
    kept = _kept_fingerprint(wd.corpus) if keep_corpus and not fresh else None
    canaries = canary_request(recipe, wd)
    fp = kept or ingest_fingerprint(recipe, canaries, exclude)
    stage("ingest", fp, lambda: dir_done(wd.corpus, fp)() and _canaries_intact(wd, canaries),
          lambda: ingest_sources(recipe.corpus.sources, wd.corpus, recipe.corpus, fp, exclude=exclude, reuse=not fresh,
                                 canaries=canaries))
    corpus_digest = manifest_digest(wd.corpus)

    given_base = recipe.model.base
    recipe = resolve_base(recipe, wd, stage, dir_done)
    lineage = record_lineage(wd, given_base, corpus_digest)
    if "gguf" in recipe.export.formats:  # refused now, not after training (export/gguf.py)
        check_gguf_request(_model_type(recipe.model.base), recipe.export.quant)

    fp = tokenizer_fingerprint(recipe, corpus_digest)
    stage("tokenizer", fp, dir_done(wd.tokenizer, fp), lambda: build_tokenizer(wd.corpus, wd.tokenizer, recipe, fp))
    tokenizer_digest = manifest_digest(wd.tokenizer)

    fp = pack_fingerprint(recipe, corpus_digest, tokenizer_digest)
    stage("pack", fp, dir_done(wd.shards, fp), lambda: pack_corpus(wd.corpus, wd.tokenizer, wd.shards, recipe.pack, fp))
    shards_digest = manifest_digest(wd.shards)

    if uses_pairs(recipe):
        fp = pairs_fingerprint(recipe, corpus_digest, tokenizer_digest)
        stage("pairs", fp, dir_done(wd.pairs, fp), lambda: mine_pairs(wd.corpus, wd.tokenizer, wd.pairs, recipe, fp))
    resolve_replay(recipe, wd, stage, dir_done, tokenizer_digest, exclude, keep_corpus=keep_corpus and not fresh)
    train_fp = run_fingerprint(recipe, wd.shards, wd.tokenizer)
    # A changed recipe means a new run (fresh); the same recipe resumes an interrupted one.
    run_manifest = _read_json(wd.run / "manifest.json")
    stale_run = run_manifest is not None and run_manifest.get("fingerprint") != train_fp
    stage("train", train_fp, dir_done(wd.run, train_fp),
          lambda: train_stage(recipe, wd, train_fp, fresh or stale_run or _foreign_checkpoints(wd.run, train_fp), nproc))
    run_digest = manifest_digest(wd.run)
    run_summary = _read_json(wd.run / "run.json")

    fp = evaluate_fingerprint(recipe, run_digest, corpus_digest, shards_digest)
    stage("eval", fp, lambda: (read_eval(wd.eval_json) or {}).get("fingerprint") == fp,
          lambda: evaluate(wd.run, wd.corpus, wd.tokenizer, wd.shards, wd.eval_json, recipe, fingerprint=fp))
    eval_digest = file_sha256(wd.eval_json) if wd.eval_json.exists() else None

    audit_digest = None
    if recipe.audit.enabled:
        fp = audit_stage_fingerprint(recipe, wd)
        stage("audit", fp, lambda: (_read_json(wd.audit_json) or {}).get("fingerprint") == fp,
              lambda: run_audit(wd.root, recipe, fingerprint=fp))
        audit_digest = _file_digest(wd.audit_json)

    fp = export_fingerprint(recipe, run_digest, tokenizer_digest, eval_digest, settings_hash("lineage", lineage))
    stage("export", fp, dir_done(wd.model, fp),
          lambda: export_model(wd.run, wd.tokenizer, wd.model, recipe, eval_path=wd.eval_json, run_summary=run_summary,
                               fingerprint=fp, lineage=lineage))

    fp = settings_hash("report", corpus_digest, shards_digest, run_digest, eval_digest, manifest_digest(wd.model), lineage,
                       audit_digest)
    stage("report", fp, lambda: wd.report_html.exists() and state.get("report", {}).get("fingerprint") == fp,
          lambda: build_report(wd.root))
    if status["report"] == "ran":  # the evaluation and the report into the run's trackers ([train] report_to)
        log_results(wd.run, recipe.train.report_to, wd.eval_json, wd.report_html)
    return {"status": status, "report": str(wd.report_html), "model": str(wd.model), "eval": str(wd.eval_json)}


def recipe_of_workdir(workdir: Path, config: Path | None = None) -> Recipe:
    """The recipe a work directory was run with (`config` if given, else the one the user gave `selfsup run`),
    its base resolved as the run resolved it: a GGUF base was imported to WORKDIR/base."""
    from selfsup.config import load_recipe
    from selfsup.rebase import original_recipe

    wd = Workdir(Path(workdir))
    recipe = load_recipe(config) if config else original_recipe(wd.root)
    if recipe.model.base is not None and Path(recipe.model.base).suffix.lower() == ".gguf":
        recipe.model.base = wd.base
    return recipe


def audit_stage_fingerprint(recipe: Recipe, wd: Workdir, profile: str | None = None) -> str:
    """What the audit stage's output depends on; `selfsup audit` with the recipe's profile writes the same,
    so `selfsup run` afterwards does not audit again."""
    return audit_fingerprint(recipe, profile or recipe.audit.profile, manifest_digest(wd.run), manifest_digest(wd.corpus),
                             _file_digest(wd.canaries))


def canary_request(recipe: Recipe, wd: Workdir) -> CanaryRequest | None:
    """What ingest plants for the audit ([audit] canaries), recorded in WORKDIR/canaries.json."""
    a = recipe.audit
    if not a.canaries:
        return None
    return CanaryRequest(wd.canaries, a.canaries_per_repetition, tuple(a.repetitions), a.controls,
                         a.seed if a.seed is not None else recipe.train.seed)


def ingest_fingerprint(recipe: Recipe, canaries: CanaryRequest | None, exclude) -> str:
    fp = source_fingerprint(recipe.corpus.sources, recipe.corpus, exclude=exclude)
    return fp if canaries is None else settings_hash(fp, "canaries", canaries.settings())


def _canaries_intact(wd: Workdir, canaries: CanaryRequest | None) -> bool:
    """A corpus planted with canaries is up to date only while its canaries.json is the one it was planted with."""
    recorded = (_read_json(wd.corpus / "manifest.json") or {}).get("canaries")
    if canaries is None:
        return recorded is None
    return canaries_intact(wd.canaries, recorded)


def _file_digest(path: Path) -> str | None:
    return file_sha256(path) if Path(path).is_file() else None


def _model_type(base: Path | None) -> str:
    """The base's architecture family (config.json model_type); the presets are llama-style."""
    config = Path(base) / "config.json" if base is not None else None
    return json.loads(config.read_text()).get("model_type", "") if config and config.is_file() else "llama"


def train_stage(recipe: Recipe, wd: Workdir, fingerprint: str, fresh: bool, nproc: int) -> None:
    """Train here, or in `nproc` processes launched with torchrun that read the resolved recipe from JSON."""
    if nproc <= 1:
        train(wd.shards, wd.tokenizer, wd.run, recipe, fingerprint=fingerprint, fresh=fresh)
        return
    from selfsup.train.distributed import World, check_split
    from selfsup.train.launch import launch_torchrun

    check_split(World(size=nproc), recipe.train.grad_accum, recipe.train.batch_size, recipe.objective.names)
    resolved = wd.root / "train-recipe.json"
    write_json_atomic(resolved, recipe.model_dump(mode="json", by_alias=True))
    args = ["train", str(wd.shards), "--tokenizer", str(wd.tokenizer), "--out", str(wd.run), "--config", str(resolved)]
    code = launch_torchrun(nproc, args + (["--fresh"] if fresh else []))
    if code != 0:
        raise StageFailure(f"training in {nproc} processes failed (exit status {code}); run the same command again "
                           "to resume from the last checkpoint")
    if not verify_manifest(wd.run, fingerprint)[0]:
        raise UsageError("training stopped before the end (interrupted); run the same command again to resume")


def resolve_base(recipe: Recipe, wd: Workdir, stage, dir_done) -> Recipe:
    """Continued pretraining: import a GGUF base first, and reuse the base's tokenizer by default.

    A base model knows its own vocabulary; training it on ids of a new tokenizer would scramble
    every embedding. So unless the recipe names a tokenizer, the base's is the tokenizer.
    """
    base = recipe.model.base
    if base is None:
        return recipe
    recipe = recipe.model_copy(deep=True)
    if Path(base).suffix.lower() == ".gguf":
        from selfsup.models.gguf import gguf_fingerprint, import_gguf

        fp = gguf_fingerprint(base)
        stage("base", fp, dir_done(wd.base, fp), lambda: import_gguf(base, wd.base))
        recipe.model.base = wd.base
    elif not Path(base).is_dir():
        raise UsageError(f"[model] base {base} is neither an HF model directory nor a .gguf file")
    if set(recipe.objective.names) & {"contrastive", "tsdae"}:
        check_mean_pooling(Path(recipe.model.base))
    if recipe.tokenizer.from_dir is None:
        recipe.tokenizer.from_dir = recipe.model.base
    return apply_continue_defaults(recipe)  # lower LR, short warmup where the recipe set none (config.py)


def check_mean_pooling(base: Path) -> None:
    """Embedding objectives train and export mean pooling; a sentence-transformers base that pools
    otherwise (BGE: the [CLS] token) would silently change how users' code embeds, so it is refused."""
    for module in _read_json(base / "modules.json") or []:
        if str(module.get("type", "")).endswith(".Pooling"):
            pooling = _read_json(base / module.get("path", "") / "config.json") or {}
            modes = sorted(k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
            if modes and modes != ["mean_tokens"]:
                raise UsageError(f"[model] base {base} pools its embeddings by {', '.join(modes)}; selfsup trains and "
                                 "exports mean pooling only: choose a mean-pooling base (all-MiniLM-L6-v2, E5, GTE)")


def resolve_replay(recipe: Recipe, wd: Workdir, stage, dir_done, tokenizer_digest: str | None, exclude,
                   keep_corpus: bool = False) -> str | None:
    """Replay: ingest `[train] replay_sources` and pack them with the run's tokenizer into WORKDIR/replay/.

    All of the replay text is training text (no held-out split); the corpus settings are the
    recipe's, so it is cleaned like the domain. Returns the replay shards' digest (None: no replay).
    """
    cfg = recipe.train
    if not cfg.replay_sources or cfg.replay_fraction <= 0:
        return None
    shards = replay_shards_dir(wd.shards)
    corpus = shards.parent / "corpus"
    corpus_cfg = recipe.corpus.model_copy(update={"sources": list(cfg.replay_sources), "validation_fraction": 0.0})
    kept = _kept_fingerprint(corpus) if keep_corpus else None
    ingest_fp = kept or source_fingerprint(cfg.replay_sources, corpus_cfg, exclude=exclude)
    fp = settings_hash("replay", ingest_fp, tokenizer_digest, recipe.pack.model_dump(exclude={"batch_documents"}))

    def work() -> None:
        if not verify_manifest(corpus, ingest_fp)[0]:
            ingest_sources(cfg.replay_sources, corpus, corpus_cfg, ingest_fp, exclude=exclude)
        pack_corpus(corpus, wd.tokenizer, shards, recipe.pack, fp)

    stage("replay", fp, dir_done(shards, fp), work)
    return manifest_digest(shards)


def record_lineage(wd: Workdir, given_base: Path | str | None, corpus_digest: str | None) -> dict[str, Any]:
    """WORKDIR/lineage.json: the base as the recipe named it, its fingerprint and family, and the corpus.

    The model card and the report quote it, and `selfsup compare` tells from it which runs share a
    base. A GGUF base is fingerprinted by its file; an HF directory by its files (models/identity.py).
    """
    from selfsup.models.identity import display_name, model_fingerprint

    base = None
    if given_base is not None:
        imported = Path(given_base).suffix.lower() == ".gguf"
        base = {"given": str(given_base), "name": display_name(given_base), "fingerprint": model_fingerprint(Path(given_base)),
                "model_type": _model_type(wd.base if imported else Path(given_base))}
    lineage = {"base": base, "corpus_digest": corpus_digest}
    if _read_json(wd.root / LINEAGE_FILE) != lineage:
        write_json_atomic(wd.root / LINEAGE_FILE, lineage)
    return lineage


def _kept_fingerprint(corpus_dir: Path) -> str | None:
    """The fingerprint a corpus already here was made with, when it verifies (it is then used as it is,
    without reading the sources again); None when there is no such corpus."""
    recorded = (_read_json(Path(corpus_dir) / "manifest.json") or {}).get("fingerprint")
    if recorded and verify_manifest(corpus_dir, recorded)[0]:
        say(f"[dim]ingest: using the corpus in {esc(corpus_dir)} as it is")
        return recorded
    return None


def _foreign_checkpoints(run_dir: Path, fingerprint: str) -> bool:
    """Checkpoints made under another recipe: the pipeline starts that run over instead of refusing."""
    from selfsup.train import find_latest

    latest, _ = find_latest(run_dir)
    if latest is None:
        return False
    manifest = _read_json(latest / "MANIFEST.json") or {}
    return manifest.get("fingerprint") != fingerprint


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _read_state(path: Path) -> dict[str, Any]:
    return _read_json(path) or {}
