"""The audit stage: the trained model (and its base) + the corpus + canaries.json → WORKDIR/audit.json.

    {"profile", "sizes", "model", "base",
     "canaries":     {"planted", "by_repetition": {r: {"canaries", "mean_exposure", "max_exposure",
                      "mean_exposure_extrapolated", "max_exposure_extrapolated", "median_guesses"}},
                      "reference_mean_exposure", "chance_threshold", "largest_r_at_chance", "records"},
     "extraction":   {"train_rate", "heldout_rate", "rates": {model: {"split/kind": {...}}}, "examples"},
     "membership":   {"auc", "auc_low", "auc_high", "strongest", "attacks": {name: {...}}},
     "regurgitation": {"samples", "hits", "leaks", "found"},
     "verdicts":     {test: "PASS" | "WARN" | "FAIL" | "NOT RUN"}, "seconds", "seconds_by_test"}

and in each test's object `verdict` (the same word) and `verdict_detail` ({"rule", "measured", "source"}).

Canary records carry a digest, never the secret. The audit covers causal decoders (clm, fim, span
on a decoder base); other objectives stop with a message that says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.audit.canaries import (
    TEMPLATES_BY_NAME,
    Canary,
    chance_threshold,
    draw_references,
    exposure_extrapolated,
    exposure_interpolated,
    read_canaries,
)
from selfsup.audit.extraction import extraction_section
from selfsup.audit.membership import attack_scores, membership_section
from selfsup.audit.regurgitation import (
    TEMPLATED_PROMPTS,
    detect,
    domain_prompts,
    raw_occurrences,
    regurgitation_section,
    sample_texts,
)
from selfsup.audit.scoring import score_rows
from selfsup.audit.verdicts import canaries_verdict, extraction_verdict, membership_verdict, regurgitation_verdict
from selfsup.audit.windows import PLACEHOLDER, duplicated_windows, pii_adjacent_windows, random_windows, read_split, window_shape
from selfsup.clean.pii import find_pii
from selfsup.config import Recipe, settings_hash
from selfsup.console import say
from selfsup.errors import UsageError
from selfsup.manifest import write_json_atomic
from selfsup.workdir import Workdir



@dataclass(frozen=True, slots=True)
class Profile:
    """How much each test reads: `quick` fits ~10 CPU-minutes for a 135M model; `full` is the papers' size."""

    references: int  # never-planted secrets per template, against which each canary is ranked
    random_windows: int  # per split: extraction and membership
    duplicated_windows: int
    pii_windows: int
    tokens_read: int  # per split, tokenised to draw windows from
    domain_prompts: int
    samples_per_prompt: int
    sample_tokens: int
    batch_size: int = 32


PROFILES = {
    "quick": Profile(references=4096, random_windows=300, duplicated_windows=50, pii_windows=50, tokens_read=1_000_000,
                     domain_prompts=6, samples_per_prompt=2, sample_tokens=48),
    "full": Profile(references=16384, random_windows=1000, duplicated_windows=250, pii_windows=250,
                    tokens_read=5_000_000, domain_prompts=32, samples_per_prompt=8, sample_tokens=128),
}


def audit_fingerprint(recipe: Recipe, *digests: str | None) -> str:
    return settings_hash("audit", recipe.audit.profile, recipe.audit.seed, recipe.train.seed, *digests)


@dataclass
class _Subject:
    """What every test reads: the models (trained, and the base where there is one), the tokenizer and
    how scoring runs."""

    models: dict[str, Any]
    model_dir: Path
    tokenizer: Any
    opener: int | None
    first: int  # the id a text opens with (BOS where the tokenizer expects one, else EOS)
    kw: dict[str, Any]  # score_rows' batch_size, device, amp_dtype, pad_id


def run_audit(workdir: Path, recipe: Recipe, *, profile: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """Every test of the audit on the work directory's trained model; writes and returns audit.json."""
    if recipe.model_objective != "clm":
        raise UsageError(f"the audit covers language models that generate (clm, fim, span on a decoder base), not "
                         f"{recipe.objective.name}: an embedding or masked model has no text to extract or sample")
    started = time.perf_counter()
    wd = Workdir(Path(workdir))
    name = profile or recipe.audit.profile
    prof = PROFILES[name]
    seed = recipe.audit.seed if recipe.audit.seed is not None else recipe.train.seed
    subject = _load(wd, recipe, prof)
    canaries = read_canaries(wd.canaries) if wd.canaries.is_file() else []
    result: dict[str, Any] = {"profile": name, "sizes": asdict(prof), "model": str(subject.model_dir), "fingerprint": fingerprint,
                              "base": str(recipe.model.base) if recipe.model.base else None}
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    say(f"[bold]audit[/] ({name}): canaries …")
    result["canaries"] = canary_section(subject.models["trained"], subject.tokenizer, canaries, prof.references, seed,
                                        subject.first, subject.kw)
    seconds["canaries"], clock = time.perf_counter() - clock, time.perf_counter()
    say("[bold]audit[/]: extraction and membership …")
    result |= _windows_tests(wd, subject, prof, seed, [c.text for c in canaries if c.repetitions])
    seconds["windows"], clock = time.perf_counter() - clock, time.perf_counter()  # one scoring pass serves both
    say("[bold]audit[/]: sampling for PII …")
    result["regurgitation"] = _regurgitation_test(wd, recipe, subject, prof, seed, [c.text for c in canaries if c.repetitions])
    seconds["regurgitation"] = time.perf_counter() - clock
    _add_verdicts(result)
    result["seconds"] = time.perf_counter() - started
    result["seconds_by_test"] = seconds
    write_json_atomic(wd.audit_json, result)
    say("[green]audited[/]: " + ", ".join(f"{t} {v}" for t, v in result["verdicts"].items()))
    return result


def _load(wd: Workdir, recipe: Recipe, prof: Profile) -> _Subject:
    from selfsup.evaluation.evaluate import resolve_model_dir
    from selfsup.models import load_base_for_training, load_pretrained
    from selfsup.tokens import document_opener, load_tokenizer, special_ids
    from selfsup.train.hardware import autocast_dtype, pick_device

    device = pick_device()
    tokenizer = load_tokenizer(wd.tokenizer)
    ids = special_ids(tokenizer)
    opener = document_opener(tokenizer)
    model_dir = resolve_model_dir(wd.run)
    models = {"trained": load_pretrained(model_dir, "clm").to(device)}
    if recipe.model.base is not None:  # as training started: rows for added tokens exist, as in eval
        models["base"] = load_base_for_training(recipe.model.model_copy(update={"lora": False}), "clm", wd.tokenizer).to(device)
    kw = dict(batch_size=prof.batch_size, device=device, amp_dtype=autocast_dtype(recipe.train.precision, device), pad_id=ids["pad"])
    return _Subject(models, model_dir, tokenizer, opener, opener if opener is not None else ids["eos"], kw)


def _windows_tests(wd: Workdir, subject: _Subject, prof: Profile, seed: int, canary_texts: list[str]) -> dict[str, Any]:
    """Extraction and membership from one teacher-forced pass of each model over the same windows."""
    from selfsup.pack import TokenShards
    from selfsup.tokens import document_encoder

    encoder = document_encoder(subject.tokenizer)
    shape = window_shape(TokenShards(wd.shards, "train").seq_len)
    read = dict(max_tokens=prof.tokens_read, seed=seed, pii_finder=pii_starts, shape=shape)
    train_docs = read_split(wd.corpus, "train", encoder, canary_texts=canary_texts, **read)
    held_docs = read_split(wd.corpus, "validation", encoder, canary_texts=[], **read)
    rng = np.random.default_rng([seed, 0xA0D17])
    windows = (random_windows(train_docs, "train", prof.random_windows, rng, shape)
               + random_windows(held_docs, "validation", prof.random_windows, rng, shape)
               + duplicated_windows(train_docs, prof.duplicated_windows, shape)
               + pii_adjacent_windows(train_docs, "train", prof.pii_windows, rng, shape))
    rows = [w.ids for w in windows]
    scores = {m: score_rows(model, rows, full=True, **subject.kw) for m, model in subject.models.items()}
    decode = subject.tokenizer.decode
    return {"extraction": extraction_section(windows, scores, decode), "membership": _membership(windows, scores, decode, seed)}


def _regurgitation_test(wd: Workdir, recipe: Recipe, subject: _Subject, prof: Profile, seed: int,
                        canary_texts: list[str]) -> dict[str, Any]:
    prompts = list(TEMPLATED_PROMPTS) + domain_prompts(wd.corpus, subject.tokenizer, prof.domain_prompts, seed, canary_texts=canary_texts)
    samples = sample_texts(subject.models["trained"], subject.tokenizer, prompts, per_prompt=prof.samples_per_prompt,
                           new_tokens=prof.sample_tokens, seed=seed, opener=subject.opener)
    hits = detect(samples)
    raw = raw_occurrences(list(hits), recipe.corpus.sources, wd.corpus, recipe.corpus)
    return regurgitation_section(samples, hits, raw, wd.corpus, prof.sample_tokens)


def _add_verdicts(result: dict[str, Any]) -> None:
    """Each test's `verdict` (PASS / WARN / FAIL / NOT RUN) and `verdict_detail` (rule, measured, source);
    `verdicts` gathers them."""
    detail = {"canaries": canaries_verdict(result["canaries"]["records"]),
              "extraction": extraction_verdict(result["extraction"]["train_rate"], result["extraction"]["heldout_rate"]),
              "membership": membership_verdict(result["membership"]),
              "regurgitation": regurgitation_verdict(result["regurgitation"])}
    for test, d in detail.items():
        result[test]["verdict"] = d["verdict"]
        result[test]["verdict_detail"] = {k: v for k, v in d.items() if k != "verdict"}
    result["verdicts"] = {test: d["verdict"] for test, d in detail.items()}


def pii_starts(text: str) -> list[int]:
    """Where personal data starts in a corpus text: a scrubbed placeholder, or a detector hit (scrubbing off)."""
    starts = [m.start() for m in PLACEHOLDER.finditer(text)]
    starts += [at for _, value in find_pii(text) if (at := text.find(value)) >= 0]
    return sorted(starts)


# ---------------------------------------------------------------- canaries

def canary_rows(tokenizer, texts_and_starts: list[tuple[str, int]], first: int) -> tuple[list[list[int]], list[np.ndarray]]:
    """Each sentence as a row opened by `first`, and the target positions of its secret's tokens."""
    enc = tokenizer([t for t, _ in texts_and_starts], add_special_tokens=False, return_offsets_mapping=True)
    rows, secret = [], []
    for ids, offsets, (_, start) in zip(enc["input_ids"], enc["offset_mapping"], texts_and_starts):
        rows.append([first, *ids])
        secret.append(np.array([k for k, (_, end) in enumerate(offsets) if end > start], dtype=np.int64))
    return rows, secret


def log_perplexities(model, tokenizer, texts_and_starts, first: int, kw) -> np.ndarray:
    """Bits: −log2 p(secret tokens | the sentence before them), per sentence."""
    rows, secret = canary_rows(tokenizer, texts_and_starts, first)
    scores = score_rows(model, rows, full=False, **{**kw, "batch_size": 8 * kw["batch_size"]})
    return np.array([-s.log_prob[k].sum() / math.log(2) for s, k in zip(scores, secret)])


def canary_section(model, tokenizer, canaries: list[Canary], n_references: int, seed: int, first: int, kw) -> dict[str, Any]:
    if not canaries:
        return {"planted": False, "records": [], "by_repetition": {},
                "note": "no canaries in this work directory: set [audit] canaries = true and run again (re-ingests and retrains)"}
    records = []
    for template in sorted({c.template for c in canaries}):
        spec = TEMPLATES_BY_NAME[template]
        mine = [c for c in canaries if c.template == template]
        reference = log_perplexities(model, tokenizer, draw_references(spec, n_references, seed), first, kw)
        planted = log_perplexities(model, tokenizer, [(c.text, c.secret_start) for c in mine], first, kw)
        interpolated = exposure_interpolated(planted, reference)
        extrapolated = exposure_extrapolated(planted, reference, spec.space_bits)
        for c, lp, e, x in zip(mine, planted, interpolated, extrapolated):
            records.append({"digest": c.digest, "template": template, "repetitions": c.repetitions,
                            "log_perplexity_bits": float(lp), "exposure": float(e), "exposure_extrapolated": float(x),
                            "reference_median_bits": float(np.median(reference)), "space_bits": spec.space_bits})
    return summarise_canaries(records, n_references)


def summarise_canaries(records: list[dict[str, Any]], n_references: int) -> dict[str, Any]:
    planted = [r for r in records if r["repetitions"] > 0]
    threshold = chance_threshold(len(planted))
    by_r: dict[str, dict[str, Any]] = {}
    for r in sorted({x["repetitions"] for x in planted}):
        group = [x for x in planted if x["repetitions"] == r]
        e = np.array([x["exposure"] for x in group])
        x = np.array([x["exposure_extrapolated"] for x in group])
        bits = float(np.median([g["space_bits"] for g in group]))
        by_r[str(r)] = {"canaries": len(group), "mean_exposure": float(e.mean()), "max_exposure": float(e.max()),
                        "mean_exposure_extrapolated": float(x.mean()), "max_exposure_extrapolated": float(x.max()),
                        "median_guesses": float(2 ** (bits - float(np.median(x)))), "above_chance": int((e > threshold).sum())}
    at_chance = None
    for r in sorted(int(k) for k in by_r):
        if by_r[str(r)]["above_chance"]:
            break
        at_chance = r
    controls = [x["exposure"] for x in records if x["repetitions"] == 0]
    return {"planted": True, "canaries": len(planted), "controls": len(controls), "references_per_template": n_references,
            "by_repetition": by_r, "reference_mean_exposure": float(np.mean(controls)) if controls else None,
            "chance_threshold": threshold, "largest_r_at_chance": at_chance, "records": records}


# ---------------------------------------------------------------- membership

def _membership(windows, scores, decode, seed: int) -> dict[str, Any]:
    """Random training windows (members) against random held-out ones (non-members), every attack; the base
    (where there is one) scored by the same attacks as the control."""
    sides: dict[str, dict[str, list]] = {m: {"train": [], "validation": []} for m in scores}
    docs: dict[str, list[str]] = {"train": [], "validation": []}
    for i, w in enumerate(windows):
        if w.kind != "random":
            continue
        text = decode(w.ids)
        base = scores["base"][i] if "base" in scores else None
        sides["trained"][w.split].append(attack_scores(scores["trained"][i], text, base))
        if base is not None:
            sides["base"][w.split].append(attack_scores(base, text, None))
        docs[w.split].append(w.doc_id)
    trained = sides["trained"]
    if not trained["train"] or not trained["validation"]:
        return {"members": len(trained["train"]), "non_members": len(trained["validation"]), "attacks": {}, "auc": None}
    control = (sides["base"]["train"], sides["base"]["validation"]) if "base" in sides else None
    return membership_section(trained["train"], trained["validation"], docs["train"], docs["validation"], seed, control)
