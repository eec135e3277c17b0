"""Canaries (Carlini et al. 2019, "The Secret Sharer", arXiv 1802.08232): random secrets planted in
the training stream, whose exposure after training says how much a model memorises what it saw
r times.

A canary is one sentence of a domain-looking template with two random slots, e.g. "The access
code for account 482913 is 839201773612." Only the secret (the last slot) is scored; the other
slot makes each canary's context its own. `[audit] canaries_per_repetition` canaries are drawn at
each repetition count r of `[audit] repetitions`; each is planted r times, every copy in another
randomly chosen **training** document, as a paragraph of its own at a random paragraph boundary.
Planting happens in the ingest merge after PII scrubbing and de-duplication, so neither removes
them; held-out documents never receive one. `[audit] controls` more canaries are drawn the same way
and never planted: their exposure is chance, measured rather than assumed.

Everything is recorded in WORKDIR/canaries.json (secrets included: the audit needs them). The
export never ships it, and audit.json and the report carry only each canary's digest.

Exposure of a canary = log2 |references| − log2 rank, where rank counts the references (random
secrets of the same template, never planted) whose log-perplexity is lower, plus one (the
interpolation of TF-Privacy's `exposures.py`); the extrapolation fits a skew-normal to the
references' log-perplexities and reads −log2 CDF at the canary's, which goes beyond log2 of the
reference count. A canary at chance has exposure 1/ln 2 ≈ 1.44 bits on average.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfsup.manifest import file_sha256, write_json_atomic

DIGITS = "0123456789"
LETTERS_AND_DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class Template:
    """A canary sentence: `text` with `{slot}` and `{secret}`, each drawn from an alphabet."""

    name: str
    text: str
    slot_alphabet: str
    slot_length: int
    secret_alphabet: str
    secret_length: int

    @property
    def space_bits(self) -> float:
        """log2 of the number of secrets this template can hold (|R| in the paper)."""
        return self.secret_length * math.log2(len(self.secret_alphabet))

    def fill(self, slot: str, secret: str) -> tuple[str, int]:
        """The sentence and where its secret starts (a character offset)."""
        before, after = self.text.split("{secret}")
        before = before.format(slot=slot)
        return before + secret + after.format(slot=slot), len(before)


TEMPLATES = (
    Template("access_code", "The access code for account {slot} is {secret}.", DIGITS, 6, DIGITS, 12),
    Template("pin", "Ticket {slot}: the customer's new PIN is {secret}.", DIGITS, 7, DIGITS, 10),
    Template("recovery_key", "Vault entry {slot} holds the recovery key {secret}.", LETTERS_AND_DIGITS, 5,
             LETTERS_AND_DIGITS, 10),
)
TEMPLATES_BY_NAME = {t.name: t for t in TEMPLATES}


@dataclass(slots=True)
class Canary:
    id: str
    template: str
    slot: str
    secret: str
    repetitions: int  # 0: a control, drawn the same way and never planted
    documents: list[str] = field(default_factory=list)  # ids of the training documents that carry a copy

    @property
    def text(self) -> str:
        return TEMPLATES_BY_NAME[self.template].fill(self.slot, self.secret)[0]

    @property
    def secret_start(self) -> int:
        return TEMPLATES_BY_NAME[self.template].fill(self.slot, self.secret)[1]

    @property
    def digest(self) -> str:
        """What audit.json and the report show instead of the secret."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def _draw(rng: np.random.Generator, alphabet: str, length: int) -> str:
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=length))


def draw_canaries(per_repetition: int, repetitions: Sequence[int], controls: int, seed: int) -> list[Canary]:
    """The canaries to plant (r copies each) and the controls (never planted), templates in turn."""
    rng = np.random.default_rng([seed, 0xCA7A])
    counts = [r for r in repetitions for _ in range(per_repetition)] + [0] * controls
    out = []
    for i, r in enumerate(counts):
        template = TEMPLATES[i % len(TEMPLATES)]
        slot, secret = _draw(rng, template.slot_alphabet, template.slot_length), _draw(rng, template.secret_alphabet, template.secret_length)
        out.append(Canary(f"c{i:03d}", template.name, slot, secret, r))
    return out


def draw_references(template: Template, n: int, seed: int) -> list[tuple[str, int]]:
    """`n` sentences of `template` with fresh random slots and secrets, never planted: (text, secret start)."""
    rng = np.random.default_rng([seed, 0x2EF, TEMPLATES.index(template)])
    return [template.fill(_draw(rng, template.slot_alphabet, template.slot_length),
                          _draw(rng, template.secret_alphabet, template.secret_length)) for _ in range(n)]


# ---------------------------------------------------------------- planting (ingest)

@dataclass(frozen=True, slots=True)
class CanaryRequest:
    """What the ingest merge plants, and where it records it (WORKDIR/canaries.json)."""

    path: Path
    per_repetition: int
    repetitions: tuple[int, ...]
    controls: int
    seed: int

    def settings(self) -> dict[str, Any]:
        """What the ingest fingerprint includes: changing any of it re-plants."""
        return {"per_repetition": self.per_repetition, "repetitions": list(self.repetitions), "controls": self.controls,
                "seed": self.seed, "templates": [asdict(t) for t in TEMPLATES]}


def plant_canaries(corpus_dir: Path, request: CanaryRequest) -> dict[str, Any]:
    """Insert every canary's copies into training documents of the corpus (rewriting its shards) and
    write canaries.json; returns what the corpus manifest records (counts and the file's digest)."""
    from selfsup.ingest.corpus import ROW_GROUP_DOCUMENTS, SCHEMA, corpus_parts

    canaries = draw_canaries(request.per_repetition, request.repetitions, request.controls, request.seed)
    parts = corpus_parts(corpus_dir)
    n_train = sum(pc.sum(pc.equal(pq.read_table(p, columns=["split"]).column("split"), "train")).as_py() or 0 for p in parts)
    rng = np.random.default_rng([request.seed, 0x91A7])
    into: dict[int, list[Canary]] = {}  # training-document index → the canaries it receives
    for canary in canaries:
        if canary.repetitions and n_train:
            # r different documents where the corpus has them; a tiny corpus gets several copies in one
            picks = rng.choice(n_train, size=canary.repetitions, replace=canary.repetitions > n_train)
            for index in picks.tolist():
                into.setdefault(index, []).append(canary)
    seen = 0
    for part in parts:
        tmp = part.with_name(part.name + ".tmp")
        source = pq.ParquetFile(part)
        with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=ROW_GROUP_DOCUMENTS):
                rows = batch.to_pydict()
                for i, split in enumerate(rows["split"]):
                    if split != "train":
                        continue
                    for canary in into.get(seen, []):
                        rows["text"][i] = insert_paragraph(rows["text"][i], canary.text, rng)
                        canary.documents.append(rows["id"][i])
                    seen += 1
                writer.write_table(pa.table(rows, schema=SCHEMA))
        source.close()
        os.replace(tmp, part)
    write_json_atomic(request.path, {"canaries": [asdict(c) for c in canaries], "settings": request.settings(),
                                     "note": "synthetic secrets planted for the audit; never ship this file"})
    planted = sum(len(c.documents) for c in canaries)
    return {"canaries": len([c for c in canaries if c.repetitions]), "controls": request.controls, "copies": planted,
            "documents": len(into), "file_sha256": file_sha256(request.path)}


def insert_paragraph(text: str, paragraph: str, rng: np.random.Generator) -> str:
    """`paragraph` as a paragraph of its own at a random paragraph boundary of `text`."""
    pieces = text.split("\n\n")
    at = int(rng.integers(0, len(pieces) + 1))
    return "\n\n".join(pieces[:at] + [paragraph] + pieces[at:])


def read_canaries(path: Path) -> list[Canary]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return [Canary(**c) for c in raw["canaries"]]


def canaries_intact(path: Path, recorded: dict[str, Any] | None) -> bool:
    """Whether canaries.json is the one the corpus was planted with (the manifest's record)."""
    return bool(recorded) and Path(path).is_file() and file_sha256(path) == recorded.get("file_sha256")


# ---------------------------------------------------------------- exposure

def exposure_interpolated(log_perplexities: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """log2 |references| − log2 rank; rank = references with a lower log-perplexity, plus one."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    ranks = np.searchsorted(ref, np.asarray(log_perplexities, dtype=np.float64), side="left") + 1
    return np.log2(len(ref)) - np.log2(ranks)


def exposure_extrapolated(log_perplexities: np.ndarray, reference: np.ndarray, cap_bits: float) -> np.ndarray:
    """−log2 of the skew-normal CDF (fitted to the references) at each log-perplexity, at most `cap_bits`
    (log2 of the number of possible secrets: no canary can be more exposed than that)."""
    from scipy.stats import skewnorm

    params = skewnorm.fit(np.asarray(reference, dtype=np.float64))
    log_cdf = skewnorm.logcdf(np.asarray(log_perplexities, dtype=np.float64), *params)
    return np.minimum(-log_cdf / math.log(2), cap_bits)


def chance_threshold(n_canaries: int, false_alarm: float = 0.05) -> float:
    """The exposure that `n_canaries` canaries at chance all stay below with probability 1 − `false_alarm`:
    one canary at chance exceeds e bits with probability 2^-e, so the largest of n exceeds
    log2(n / false_alarm) with probability about `false_alarm`."""
    return math.log2(max(n_canaries, 1) / false_alarm)
