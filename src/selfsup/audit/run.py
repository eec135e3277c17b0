"""The audit stage: the trained model (and its base) + the corpus + canaries.json → WORKDIR/audit.json.

    {"profile", "sizes", "model", "base",
     "canaries":     {"planted", "by_repetition": {r: {"canaries", "mean_exposure", "max_exposure",
                      "mean_exposure_extrapolated", "max_exposure_extrapolated", "median_guesses"}},
                      "reference_mean_exposure", "chance_threshold", "largest_r_at_chance", "records"},
     "extraction":   {"train_rate", "heldout_rate", "rates": {model: {"split/kind": {...}}}, "examples"},
     "membership":   {"auc", "auc_low", "auc_high", "strongest", "attacks": {name: {...}}},
     "regurgitation": {"samples", "hits", "leaks", "found"},
     "verdicts":     {test: "PASS" | "WARN" | "FAIL" | "NOT RUN" | "NOT APPLICABLE"}, "seconds", "seconds_by_test"}

and in each test's object `verdict` (the same word) and `verdict_detail` ({"rule", "measured", "source"}).

Canary records carry a digest, never the secret. The audit covers causal decoders (clm, fim, span
on a decoder base) and masked-LM encoders (mlm), which are scored by pseudo-log-likelihood: a
token's log-probability with itself masked (a canary's secret in 3 passes, each masking every third
of its tokens; a window in 7); extraction and sampling do not apply to them and are marked so.
Embedding objectives (contrastive, tsdae) stop with a message that says why.
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
from selfsup.audit.scoring import RowScores, score_masked_rows, score_rows
from selfsup.audit.verdicts import (
    canaries_verdict,
    extraction_verdict,
    membership_verdict,
    not_applicable,
    regurgitation_verdict,
)
from selfsup.audit.windows import PLACEHOLDER, duplicated_windows, pii_adjacent_windows, random_windows, read_split, window_shape
from selfsup.clean.pii import find_pii
from selfsup.config import Recipe, settings_hash
from selfsup.console import say
from selfsup.errors import UsageError
from selfsup.manifest import write_json_atomic
from selfsup.workdir import Workdir

WINDOW_PASSES = 7  # a masked LM scores a window in 7 passes, each masking every 7th token (~14%, as training masks 15%)
CANARY_PASSES = 3  # and a canary's secret in 3, each masking every 3rd of its tokens: exact PLL costs 12 passes a secret
NOT_GENERATIVE = "a masked LM does not generate text: nothing to sample"


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


def audit_fingerprint(recipe: Recipe, profile: str, *digests: str | None) -> str:
    return settings_hash("audit", profile, recipe.audit.seed, recipe.train.seed, *digests)


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
    mask_id: int | None = None  # a masked LM: scored by pseudo-log-likelihood

    def score(self, model, rows: list[list[int]], targets: list[np.ndarray] | None = None, *, full: bool = True,
              batch_size: int | None = None) -> list[RowScores]:
        """Per-position scores of `rows`: next-token (decoder; every position, `targets` unused) or with the
        position masked (masked LM: the `targets` positions in CANARY_PASSES passes, else every token in
        WINDOW_PASSES passes)."""
        kw = {**self.kw, "batch_size": batch_size or self.kw["batch_size"]}
        if self.mask_id is None:
            return score_rows(model, rows, full=full, **kw)
        if targets is None:
            return score_masked_rows(model, rows, [np.arange(len(r)) for r in rows], groups=WINDOW_PASSES, mask_id=self.mask_id, **kw)
        return score_masked_rows(model, rows, targets, groups=CANARY_PASSES, mask_id=self.mask_id, **kw)


def run_audit(workdir: Path, recipe: Recipe, *, profile: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """Every test of the audit on the work directory's trained model; writes and returns audit.json."""
    if recipe.model_objective not in ("clm", "mlm"):
        raise UsageError(f"the audit covers language models (clm, fim, span on a decoder base, mlm), not "
                         f"{recipe.objective.name}: an embedding model has no token probabilities to read")
    started = time.perf_counter()
    wd = Workdir(Path(workdir))
    name = profile or recipe.audit.profile
    prof = PROFILES[name]
    seed = recipe.audit.seed if recipe.audit.seed is not None else recipe.train.seed
    subject = _load(wd, recipe, prof)
    canaries = read_canaries(wd.canaries) if wd.canaries.is_file() else []
    planted = [c.text for c in canaries if c.repetitions]
    result: dict[str, Any] = {"profile": name, "sizes": asdict(prof), "model": str(subject.model_dir), "fingerprint": fingerprint,
                              "base": str(recipe.model.base) if recipe.model.base else None}
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    say(f"[bold]audit[/] ({name}): canaries …")
    result["canaries"] = canary_section(subject, canaries, prof.references, seed)
    seconds["canaries"], clock = time.perf_counter() - clock, time.perf_counter()
    say("[bold]audit[/]: extraction and membership …")
    result |= _windows_tests(wd, subject, prof, seed, planted)
    seconds["windows"], clock = time.perf_counter() - clock, time.perf_counter()  # one scoring pass serves both
    if subject.mask_id is None:
        say("[bold]audit[/]: sampling for PII …")
        result["regurgitation"] = _regurgitation_test(wd, recipe, subject, prof, seed, planted)
        seconds["regurgitation"] = time.perf_counter() - clock
    else:
        result["regurgitation"] = {"applies": False, "note": NOT_GENERATIVE}
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

    family = recipe.model_objective
    device = pick_device()
    tokenizer = load_tokenizer(wd.tokenizer)
    ids = special_ids(tokenizer)
    opener = document_opener(tokenizer)
    model_dir = resolve_model_dir(wd.run)
    models = {"trained": load_pretrained(model_dir, family).to(device)}
    if recipe.model.base is not None:  # as training started: rows for added tokens exist, as in eval
        models["base"] = load_base_for_training(recipe.model.model_copy(update={"lora": False}), family, wd.tokenizer).to(device)
    kw = dict(batch_size=prof.batch_size, device=device, amp_dtype=autocast_dtype(recipe.train.precision, device), pad_id=ids["pad"])
    return _Subject(models, model_dir, tokenizer, opener, opener if opener is not None else ids["eos"], kw,
                    mask_id=ids["mask"] if family == "mlm" else None)


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
    scores = {m: subject.score(model, rows) for m, model in subject.models.items()}
    decode = subject.tokenizer.decode
    extraction = (extraction_section(windows, scores, decode) if subject.mask_id is None
                  else {"applies": False, "train_rate": None, "heldout_rate": None,
                        "note": "a masked LM does not continue a prefix: extraction does not apply"})
    return {"extraction": extraction, "membership": _membership(windows, scores, decode, seed)}


def _regurgitation_test(wd: Workdir, recipe: Recipe, subject: _Subject, prof: Profile, seed: int,
                        canary_texts: list[str]) -> dict[str, Any]:
    prompts = list(TEMPLATED_PROMPTS) + domain_prompts(wd.corpus, subject.tokenizer, prof.domain_prompts, seed, canary_texts=canary_texts)
    samples = sample_texts(subject.models["trained"], subject.tokenizer, prompts, per_prompt=prof.samples_per_prompt,
                           new_tokens=prof.sample_tokens, seed=seed, opener=subject.opener)
    hits = detect(samples)
    raw = raw_occurrences(list(hits), recipe.corpus.sources, wd.corpus, recipe.corpus)
    return regurgitation_section(samples, hits, raw, wd.corpus, prof.sample_tokens)


def _add_verdicts(result: dict[str, Any]) -> None:
    """Each test's `verdict` (PASS / WARN / FAIL / NOT RUN / NOT APPLICABLE) and `verdict_detail` (rule, measured, source);
    `verdicts` gathers them."""
    detail = {"canaries": canaries_verdict(result["canaries"]["records"]),
              "extraction": extraction_verdict(result["extraction"]["train_rate"], result["extraction"]["heldout_rate"])
              if result["extraction"].get("applies", True) else not_applicable("extraction", result["extraction"]["note"]),
              "membership": membership_verdict(result["membership"]),
              "regurgitation": regurgitation_verdict(result["regurgitation"])
              if result["regurgitation"].get("applies", True) else not_applicable("regurgitation", NOT_GENERATIVE)}
    for test, d in detail.items():
        result[test]["verdict"] = d["verdict"]
        result[test]["verdict_detail"] = {k: v for k, v in d.items() if k != "verdict"}
    result["verdicts"] = {test: d["verdict"] for test, d in detail.items()}


def pii_starts(text: str) -> list[int]:
    """Where personal data starts in a corpus text: a scrubbed placeholder, or a detector hit (scrubbing off)."""
    starts = [m.start() for m in PLACEHOLDER.finditer(text)]
    starts += [at for _, value in find_pii(text) if (at := text.find(value)) >= 0]
    return sorted(set(starts))


# ---------------------------------------------------------------- canaries

def canary_rows(tokenizer, texts_and_starts: list[tuple[str, int]], first: int) -> tuple[list[list[int]], list[np.ndarray]]:
    """Each sentence as a row opened by `first`, and the target positions of its secret's tokens (the
    position that predicts each: row index − 1)."""
    enc = tokenizer([t for t, _ in texts_and_starts], add_special_tokens=False, return_offsets_mapping=True)
    rows, secret = [], []
    for ids, offsets, (_, start) in zip(enc["input_ids"], enc["offset_mapping"], texts_and_starts):
        rows.append([first, *ids])
        secret.append(np.array([k for k, (_, end) in enumerate(offsets) if end > start], dtype=np.int64))
    return rows, secret


def log_perplexities(subject: _Subject, model, texts_and_starts) -> np.ndarray:
    """Bits: −log2 p(secret tokens | the sentence before them); for a masked LM, the secret's
    pseudo-log-likelihood (a third of its tokens masked at a time, the rest of the sentence visible)."""
    rows, secret = canary_rows(subject.tokenizer, texts_and_starts, subject.first)
    if subject.mask_id is not None:
        scores = subject.score(model, rows, [k + 1 for k in secret])
        return np.array([-s.log_prob.sum() / math.log(2) for s in scores])
    scores = subject.score(model, rows, full=False, batch_size=8 * subject.kw["batch_size"])
    return np.array([-s.log_prob[k].sum() / math.log(2) for s, k in zip(scores, secret)])


def canary_section(subject: _Subject, canaries: list[Canary], n_references: int, seed: int) -> dict[str, Any]:
    if not canaries:
        return {"planted": False, "records": [], "by_repetition": {},
                "note": "no canaries in this work directory: set [audit] canaries = true and run again (re-ingests and retrains)"}
    model = subject.models["trained"]
    records = []
    for template in sorted({c.template for c in canaries}):
        spec = TEMPLATES_BY_NAME[template]
        mine = [c for c in canaries if c.template == template]
        reference = log_perplexities(subject, model, draw_references(spec, n_references, seed))
        planted = log_perplexities(subject, model, [(c.text, c.secret_start) for c in mine])
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
