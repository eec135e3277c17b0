"""`selfsup compare`: every model of several runs, scored once on the same evidence.

Each run is an island otherwise: its eval.json compares its adapted model with its own base, on
its own sample of text, cut by its own tokenizer's token budget. To say whether a new base alone
beats an old adapted model, or whether LoRA kept up with a full fine-tune, every model must be
scored on the *same bytes*:

- **held-out domain documents**: the validation split of the runs' corpus. Runs whose held-out
  documents differ are refused with a message naming the difference, or, with `common=True`,
  compared on the documents they share (said so in compare.json and on the page). The sample is
  the first `[eval] max_documents` of them, cut at a byte budget (4 bytes per `[eval] max_tokens`):
  the same text for every model, whatever its tokenizer.
- **general text**: every `[eval] texts` set of the runs' recipes.
- **task metrics**: cloze probes (salient domain terms, one set for all) for language models;
  held-out infill (middle exact match) for fill-in-the-middle runs' models whose tokenizer has the
  sentinels; retrieval (MRR, recall) among held-out passages for embedding models, BM25 beside them.

Bits per byte is tokenizer-independent, so a Llama-family base and a Gemma-family one share a
column. The models are every run's base and adapted model, a base shared by several runs counted
once. Scores are cached per model fingerprint (its files) and evidence digest, in `cache_dir`:
re-comparing, or adding one run to a comparison, scores only what is new.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.config import Recipe, recipe_from_dict, settings_hash
from selfsup.console import esc, say
from selfsup.errors import UsageError
from selfsup.evaluation.cloze import domain_probes, ranks_of_answers, score_probes, summarise
from selfsup.evaluation.text_sets import TextSet, read_text_sets, spread
from selfsup.ingest import read_documents
from selfsup.manifest import read_json_dict, verify_manifest, write_json_atomic
from selfsup.models.identity import display_name, model_fingerprint

SCORING_VERSION = 4  # bump when a score's definition changes: cached scores are then recomputed
BYTES_PER_TOKEN_BUDGET = 4  # the held-out byte budget per token of [eval] max_tokens
LM_OBJECTIVES = ("clm", "fim", "mlm")
EMBEDDING_OBJECTIVES = ("contrastive", "tsdae")
SEED = 1234


@dataclass
class CompareRun:
    """One work directory: its recipe, the models it holds, its cost, and where it came from."""

    workdir: Path
    name: str
    recipe: Recipe
    run: dict[str, Any]
    lineage: dict[str, Any]
    rebase: dict[str, Any] | None
    adapted_dir: Path | None
    base_dir: Path | None

    @property
    def objective(self) -> str:
        """The model family's objective: "clm" for every decoder run (span on a decoder, a mix)."""
        return self.recipe.model_objective

    @property
    def trains(self) -> list[str]:
        """The objectives the run trained (a mix's several)."""
        return self.recipe.objective.names

    def cost(self) -> dict[str, Any]:
        return {"minutes": (self.run.get("elapsed_s") or 0) / 60, "tokens": self.run.get("tokens"), "steps": self.run.get("steps")}


@dataclass
class CompareModel:
    name: str
    role: str  # "base" or "adapted"
    path: Path
    fingerprint: str
    objective: str
    runs: list[str] = field(default_factory=list)  # the runs it belongs to (a shared base: several)


@dataclass
class Evidence:
    """The same texts and probes for every model."""

    heldout: list[str]
    general: list[TextSet]
    probes: list
    info: dict[str, Any]
    infill: bool = False  # a run trained fim or span: every decoder with FIM sentinels is asked for held-out middles

    def digest(self) -> str:
        blob = json.dumps([self.heldout, [(s.name, s.passages) for s in self.general], [p.as_dict() for p in self.probes],
                           self.infill])
        return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------- the runs and their models


def load_runs(workdirs: list[Path], *, follow_rebase: bool = True) -> list[CompareRun]:
    """Each work directory's run; a rebased run brings the run it was rebased from, if not given."""
    runs = [load_run(Path(w)) for w in workdirs]
    if follow_rebase:
        given = {r.workdir.resolve() for r in runs}
        for r in list(runs):
            origin = Path((r.rebase or {}).get("from", ""))
            if r.rebase and origin.is_dir() and origin.resolve() not in given:
                say(f"[dim]compare: adding {esc(origin)}, the run {esc(r.name)} was rebased from")
                runs.insert(runs.index(r), load_run(origin))
                given.add(origin.resolve())
    origins = {Path(r.rebase["from"]).resolve() for r in runs if r.rebase and r.rebase.get("from")}
    runs.sort(key=lambda r: r.workdir.resolve() not in origins)  # an origin first: the evidence is chosen from it
    names = [r.name for r in runs]
    for r in runs:  # two folders called "work" in different places: tell them apart
        if names.count(r.name) > 1:
            r.name = f"{r.workdir.parent.name}/{r.workdir.name}"
    return runs


def load_run(workdir: Path) -> CompareRun:
    from selfsup.evaluation.evaluate import resolve_model_dir

    run_json = workdir / "run" / "run.json"
    if not run_json.is_file():
        raise UsageError(f"{workdir} holds no finished run (no run/run.json); run `selfsup run` there first")
    run = json.loads(run_json.read_text(encoding="utf-8"))
    recipe = recipe_from_dict(run["recipe"], origin=str(run_json))
    model = workdir / "model"
    if verify_manifest(model)[0]:
        adapted = model
    else:
        try:
            adapted = resolve_model_dir(workdir / "run")
        except UsageError:
            adapted = None
    base = Path(recipe.model.base) if recipe.model.base is not None else None
    return CompareRun(workdir=workdir, name=workdir.name, recipe=recipe, run=run, lineage=read_json_dict(workdir / "lineage.json") or {},
                      rebase=read_json_dict(workdir / "rebase.json"), adapted_dir=adapted, base_dir=base)


def collect_models(runs: list[CompareRun]) -> list[CompareModel]:
    """Every run's base and adapted model; a base (same fingerprint) shared by several runs appears once."""
    models: list[CompareModel] = []
    by_fingerprint: dict[str, CompareModel] = {}
    for r in runs:
        if r.base_dir is not None:
            if not r.base_dir.is_dir():
                raise UsageError(f"the base of {r.workdir}, {r.base_dir}, is gone; it is needed to score the base")
            fp = (r.lineage.get("base") or {}).get("fingerprint") if _imported_gguf(r) else None
            fp = fp or model_fingerprint(r.base_dir)
            if fp in by_fingerprint:
                by_fingerprint[fp].runs.append(r.name)
            else:
                name = (r.lineage.get("base") or {}).get("name") or display_name(r.base_dir)
                by_fingerprint[fp] = CompareModel(name, "base", r.base_dir, fp, r.objective, [r.name])
                models.append(by_fingerprint[fp])
        if r.adapted_dir is not None:
            models.append(CompareModel(f"{r.name} (adapted)", "adapted", r.adapted_dir, model_fingerprint(r.adapted_dir),
                                       r.objective, [r.name]))
    _unique_names(models)
    return models


def _imported_gguf(r: CompareRun) -> bool:
    """A GGUF base imported into WORKDIR/base: the lineage's fingerprint (the GGUF's) names it."""
    return r.base_dir is not None and r.base_dir.resolve() == (r.workdir / "base").resolve()


def _unique_names(models: list[CompareModel]) -> None:
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name} [{m.fingerprint.partition(':')[2][:8]}]"


# ---------------------------------------------------------------- the evidence


def heldout_documents(workdir: Path) -> list[tuple[str, str, str]]:
    """(sha256 of text, text, source) of every validation document, in corpus order."""
    docs = read_documents(workdir / "corpus", split="validation", columns=("text", "source"))
    return [(hashlib.sha256(d["text"].encode()).hexdigest(), d["text"], d["source"]) for d in docs]


def common_heldout(runs: list[CompareRun], *, common: bool) -> tuple[list[str], dict[str, Any]]:
    """The held-out texts every run shares, in the first run's order, and what was checked.

    Different held-out sets make scores incomparable: refused, naming the difference, unless
    `common` (then the shared documents, said so)."""
    per_run = [heldout_documents(r.workdir) for r in runs]
    if not per_run[0]:
        raise UsageError(f"{runs[0].workdir} has no held-out documents to compare on; raise [corpus] validation_fraction")
    keys = [{k for k, _, _ in docs} for docs in per_run]
    shared = set.intersection(*keys)
    same = all(k == keys[0] for k in keys)
    info = {"documents_per_run": {r.name: len(d) for r, d in zip(runs, per_run)}, "identical": same,
            "common_only": False, "common_documents": len(shared)}
    if not same:
        detail = _difference(runs, per_run, shared)
        if not common:
            raise UsageError(f"the runs were not evaluated on the same held-out documents: {detail}. Rebase with "
                             "`selfsup rebase` to keep the split, or compare on the documents they share with --common")
        if not shared:
            raise UsageError(f"the runs share no held-out document ({detail}); there is nothing to compare them on")
        info |= {"common_only": True, "note": f"compared on the {len(shared)} held-out documents all runs share ({detail})"}
    texts = [t for k, t, _ in per_run[0] if k in shared]
    return texts, info


def _difference(runs: list[CompareRun], per_run, shared: set[str]) -> str:
    parts = [f"{r.name} has {len(d)}" for r, d in zip(runs, per_run)]
    for r, docs in zip(runs, per_run):
        only = [src for k, _, src in docs if k not in shared]
        if only:
            return ", ".join(parts) + f", {len(shared)} in common; e.g. {only[0]} is held out only in {r.name}"
    return ", ".join(parts)


def gather_evidence(runs: list[CompareRun], *, common: bool = False, max_bytes: int | None = None) -> Evidence:
    """Held-out sample, general sets and cloze probes: chosen once, from the first run's settings
    (a rebase's origin comes first, so comparing the pair in either order gives the same evidence)."""
    cfg = runs[0].recipe.eval
    texts, info = common_heldout(runs, common=common)
    budget = max_bytes or BYTES_PER_TOKEN_BUDGET * cfg.max_tokens
    heldout = cut_to_bytes(texts[: cfg.max_documents], budget)
    paths = list(dict.fromkeys(p for r in runs for p in r.recipe.eval.texts))
    mined = read_text_sets(paths, max(1000, cfg.max_documents))
    general = [TextSet(s.name, s.path, cut_to_bytes(spread(s.passages, cfg.max_documents), budget)) for s in mined]
    probes = []
    if cfg.cloze_probes and any(r.objective in LM_OBJECTIVES for r in runs):
        from selfsup.tokens import load_tokenizer

        domain = [d["text"] for d in islice(read_documents(runs[0].workdir / "corpus", split="train", columns=("text",)), 5000)]
        base = runs[0].recipe.model.base
        base_dir = runs[0].workdir / "base" if (runs[0].workdir / "base").is_dir() else Path(base) if base else None
        probes = domain_probes(domain, [p for s in mined for p in s.passages], load_tokenizer(runs[0].workdir / "tokenizer"),
                               texts[: cfg.max_documents], n=cfg.cloze_probes, k=cfg.cloze_candidates, seed=SEED,
                               general_tokenizer=load_tokenizer(base_dir) if base_dir is not None and base_dir.is_dir() else None)
    info |= {"documents": len(heldout), "bytes": sum(len(t.encode()) for t in heldout),
             "general": [{"name": s.name, "passages": len(s.passages), "bytes": sum(len(p.encode()) for p in s.passages)}
                         for s in general],
             "cloze_probes": len(probes)}
    # Infill is asked of every decoder whose tokenizer has FIM sentinels when a run trained an infilling objective.
    return Evidence(heldout, general, probes, info, infill=any({"fim", "span"} & set(r.trains) for r in runs))


def cut_to_bytes(texts: list[str], budget: int) -> list[str]:
    """Whole texts while they fit `budget` UTF-8 bytes; the one that crosses it is cut at a character."""
    out, used = [], 0
    for text in texts:
        size = len(text.encode("utf-8"))
        if used + size > budget:
            room = budget - used
            if room > 0:
                out.append(text.encode("utf-8")[:room].decode("utf-8", errors="ignore"))
            break
        out.append(text)
        used += size
    return out


# ---------------------------------------------------------------- scoring, cached


def score_models(models: list[CompareModel], evidence: Evidence, *, seq_len: int, recipe: Recipe,
                 cache_dir: Path) -> dict[str, dict[str, Any]]:
    """{fingerprint: {"scores", "cached", "seconds"}}: each model scored once, or read from the cache."""
    from selfsup.train.hardware import autocast_dtype, pick_device

    device = pick_device()
    amp = autocast_dtype(recipe.train.precision, device)
    cache_dir = Path(cache_dir)
    digest = evidence.digest()
    results: dict[str, dict[str, Any]] = {}
    for m in models:
        key = settings_hash("compare", SCORING_VERSION, m.fingerprint, _family(m.objective), digest, seq_len)
        path = cache_dir / f"{key[:32]}.json"
        cached = read_json_dict(path)
        if cached and cached.get("key") == key:
            results[m.fingerprint] = {"scores": cached["scores"], "cached": True, "seconds": cached.get("seconds", 0.0)}
            say(f"[dim]compare: {esc(m.name)} from the cache")
            continue
        say(f"[bold]compare[/] scoring {esc(m.name)} …")
        started = time.perf_counter()
        scores = score_model(m, evidence, seq_len=seq_len, recipe=recipe, device=device, amp_dtype=amp)
        seconds = time.perf_counter() - started
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"key": key, "model": str(m.path), "fingerprint": m.fingerprint, "scores": scores,
                                 "seconds": seconds})
        results[m.fingerprint] = {"scores": scores, "cached": False, "seconds": seconds}
    return results


def score_model(m: CompareModel, evidence: Evidence, *, seq_len: int, recipe: Recipe, device, amp_dtype) -> dict[str, Any]:
    """A model's figures on the evidence: bits per byte per text set, cloze or retrieval."""
    from selfsup.evaluation.lift import score_texts
    from selfsup.models import load_pretrained
    from selfsup.tokens import load_tokenizer

    model = load_pretrained(m.path, m.objective).to(device)
    tokenizer = load_tokenizer(m.path)
    family = _family(m.objective)
    scores: dict[str, Any] = {}
    if family == "lm":
        kw = dict(recipe=_scoring_recipe(recipe, m.objective), seq_len=seq_len, device=device, amp_dtype=amp_dtype)
        scores["heldout"] = score_texts(model, tokenizer, evidence.heldout, **kw)
        for s in evidence.general:
            scores[s.name] = score_texts(model, tokenizer, s.passages, **kw)
        if evidence.infill and m.objective == "clm":  # the base too: did training teach it to fill in?
            scores["infill"] = score_infill(model, tokenizer, evidence.heldout, seq_len=seq_len, recipe=recipe,
                                            device=device, amp_dtype=amp_dtype)
        if evidence.probes:
            ranks = ranks_of_answers(evidence.probes, score_probes(model, tokenizer, evidence.probes, m.objective,
                                                                 device=device, amp_dtype=amp_dtype))
            scores["cloze"] = summarise(ranks, len(evidence.probes[0].candidates))
    elif family == "embedding":
        scores["retrieval"] = score_retrieval_texts(model, tokenizer, evidence.heldout, recipe, device=device)
    return scores


def score_infill(model, tokenizer, texts: list[str], *, seq_len: int, recipe: Recipe, device, amp_dtype) -> dict[str, Any]:
    """Held-out lines filled in (evaluation/infill.py, as evaluate does): middle bits/byte, exact match,
    token accuracy; {} for a model whose tokenizer has no FIM sentinels (a base that never learned the format)."""
    from selfsup.evaluation.infill import fim_questions, score_fim
    from selfsup.tokens import document_encoder, document_opener, special_ids

    ids = special_ids(tokenizer)
    if any(ids.get(k) is None for k in ("fim_prefix", "fim_middle", "fim_suffix")):
        return {}
    questions = fim_questions(texts, document_encoder(tokenizer), ids, seq_len, SEED, opener=document_opener(tokenizer))
    return score_fim(model, questions, batch_size=recipe.eval.batch_size, device=device, amp_dtype=amp_dtype, pad_id=ids["pad"])


def score_retrieval_texts(model, tokenizer, texts: list[str], recipe: Recipe, *, device) -> dict[str, Any]:
    """Held-out queries (headings, first sentences, inverse cloze) find their passages among all held-out
    passages (evaluation/retrieval.py, as evaluate does); BM25 beside."""
    from selfsup.evaluation.retrieval import RetrievalSet, rank_with_bm25, rank_with_model
    from selfsup.tokens import special_ids

    ids = special_ids(tokenizer)
    rs = RetrievalSet.from_texts(texts, SEED)
    if len(rs) < 2:
        return {}
    out = rank_with_model(model, tokenizer, rs, width=recipe.objective.passage_tokens, pad_id=ids["pad"],
                          device=device).metrics(rs)
    out["bm25"] = rank_with_bm25(rs).metrics(rs)
    return out


def _scoring_recipe(recipe: Recipe, objective: str) -> Recipe:
    """The recipe with no token cap: the evidence is already cut to the same bytes for every model."""
    r = recipe.model_copy(deep=True)
    r.eval.max_tokens = 10**12
    r.objective.name = objective
    return r


def _family(objective: str) -> str:
    if objective in LM_OBJECTIVES:
        return "lm"
    if objective in EMBEDDING_OBJECTIVES:
        return "embedding"
    return "other"



def bits(scores: dict[str, Any], name: str) -> float | None:
    value = (scores.get(name) or {}).get("bits_per_byte")
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None
