"""Cloze probes: does the model know the domain's words? A knowledge test with no labels.

Bits per byte says a model predicts domain text better; a cloze probe asks something a person
can read: in a held-out sentence, mask a salient domain term and let the model rank the true term
among K candidates (the true one and K−1 distractors, other domain terms). Accuracy is top-1
and mean reciprocal rank over the probes; chance is 1/K.

Salient terms are words (identifiers included, at least 4 characters) that are frequent in the
domain's training documents, rare in general text (when `[eval] texts` gives some) and split
into many pieces by the tokenizer: the words a general model has least reason to know.

    salience(w) = ln(domain rate / smoothed general rate) + ln(pieces(w))

For a continued run, only *specific* words qualify: split into two or more pieces by the base
model's own tokenizer (trained on general text, it keeps common words such as "database" or
"contains" whole), or shaped like an identifier, an option or a code (`sqlite3_open`, `PRAGMA`,
`journal_mode`, `E042`). A run from scratch has no general tokenizer to ask; its terms are
ranked by salience alone.

Beside term probes, multiple-choice items are mined from the documents' structure (`knowledge_items`),
each the same kind of probe (the true answer among in-domain distractors of the same role):
- `definition`: a sentence that defines a term ("UPSERT is a clause added to INSERT …"), the term
  hidden, other defined terms of the domain as distractors;
- `default`: a setting's default ("The default value is 1000"), the value hidden, other defaults
  of the domain as distractors;
- `signature`: a function with its arguments ("sqlite3_open(const char *zFilename, …)"), the name
  hidden, other functions of the domain as distractors.

Everything is deterministic: terms are ordered by salience then spelling, probes are taken in
document order, distractors are drawn with a generator seeded by (seed, probe number).

Scores (higher = the model prefers the candidate):
- clm: the log-probability of the whole sentence with the candidate written in ([EOS] + tokens);
- mlm: the pseudo-log-likelihood of the candidate's tokens in place: each of its tokens masked
  in turn, the others visible (Salazar et al. 2020).
Ties count against the true term, so a model that cannot tell candidates apart scores no better
than the last rank.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from selfsup.tokens import document_encoder, document_opener
from selfsup.train.hardware import autocast

WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{3,}\b")
IDENTIFIER_SHAPED = re.compile(r"_|\d|[a-z][A-Z]|^[A-Z]{3,}$")  # snake_case, digits, camelCase, ALLCAPS
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
MIN_SENTENCE_CHARS, MAX_SENTENCE_CHARS = 30, 300
MIN_TERM_COUNT = 3
PROBES_PER_DOCUMENT = 2
DISTRACTOR_POOL = 200  # distractors come from the most salient terms


@dataclass(frozen=True, slots=True)
class Probe:
    sentence: str
    start: int  # the term's character span in `sentence`
    end: int
    answer: str
    candidates: list[str]  # the answer among distractors, in a seeded order
    kind: str = "term"  # "term", or a knowledge item: "definition", "default", "signature"

    def with_candidate(self, term: str) -> str:
        return self.sentence[: self.start] + term + self.sentence[self.end :]

    def masked(self) -> str:
        return self.with_candidate("____")

    def as_dict(self) -> dict:
        return asdict(self)


def salient_terms(domain_texts: list[str], general_texts: list[str], tokenizer, n: int = 1000,
                  general_tokenizer=None) -> list[str]:
    """The n most salient domain terms, most salient first (see the module docstring);
    `general_tokenizer` (the base model's) keeps only the specific ones."""
    domain = Counter(w for t in domain_texts for w in WORD.findall(t))
    general = Counter(w for t in general_texts for w in WORD.findall(t))
    words = sorted(w for w, c in domain.items() if c >= MIN_TERM_COUNT)
    if not words:
        return []
    pieces = [len(e.ids) for e in document_encoder(tokenizer).encode_batch_fast([" " + w for w in words], add_special_tokens=False)]
    if general_tokenizer is not None:
        general_pieces = [len(e.ids) for e in document_encoder(general_tokenizer).encode_batch_fast(
            [" " + w for w in words], add_special_tokens=False)]
        specific = [i for i in range(len(words)) if general_pieces[i] >= 2 or IDENTIFIER_SHAPED.search(words[i])]
        words, pieces = [words[i] for i in specific], [pieces[i] for i in specific]
        if not words:
            return []
    n_domain = sum(domain.values())
    n_general = sum(general.values()) + len(domain)  # add-one over the domain's word types

    def salience(i: int) -> float:
        w = words[i]
        rate_domain = domain[w] / n_domain
        rate_general = (general[w] + 1) / n_general
        return math.log(rate_domain / rate_general) + math.log(max(pieces[i], 1))

    order = sorted(range(len(words)), key=lambda i: (-salience(i), words[i]))
    return [words[i] for i in order[:n]]


def make_probes(texts: list[str], terms: list[str], *, n: int, k: int, seed: int) -> list[Probe]:
    """Up to n probes from held-out texts: per sentence, its most salient term is the answer."""
    rank = {t: i for i, t in enumerate(terms)}
    pool = terms[:DISTRACTOR_POOL]
    probes: list[Probe] = []
    if len(pool) < k:
        return probes  # not enough domain terms to draw distractors from
    for text in texts:
        taken = 0
        for sentence in SENTENCE_END.split(text):
            sentence = " ".join(sentence.split())
            if not MIN_SENTENCE_CHARS <= len(sentence) <= MAX_SENTENCE_CHARS:
                continue
            found = [m for m in WORD.finditer(sentence) if m.group() in rank]
            if not found:
                continue
            best = min(found, key=lambda m: (rank[m.group()], m.start()))
            rng = random.Random(seed * 1_000_003 + len(probes))
            distractors = rng.sample([t for t in pool if t != best.group()], k - 1)
            candidates = [best.group(), *distractors]
            rng.shuffle(candidates)
            probes.append(Probe(sentence, best.start(), best.end(), best.group(), candidates))
            taken += 1
            if len(probes) >= n:
                return probes
            if taken >= PROBES_PER_DOCUMENT:
                break
    return probes


# A knowledge item: (kind, pattern, group of the hidden answer). Matched per sentence.
KNOWLEDGE_PATTERNS = (
    ("definition", re.compile(r"^(?:An? |The )?((?!(?:This|That|These|Those|There|Here|It|Each|Such|Some|One|Other|All|Any|Every|Both)\b)"
                              r"[A-Z_][\w\-]{2,}(?: [A-Z_][\w\-]*){0,2}) (?:is|are|refers to|means) (?:an?|the|used|one|called)\b"), 1),
    ("default", re.compile(r"\bdefault(?: value| setting)?(?: of [^.;]{1,40}?| for [^.;]{1,40}?)? (?:is|was) "
                           r"(\"[^\"]{1,20}\"|'[^']{1,20}'|-?\d+(?:[.,]\d+)*|[A-Z_][A-Z0-9_]{2,}|on|off|true|false|yes|no)(?![\w.,]\w)"), 1),
    ("signature", re.compile(r"\b([A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+)\s*\([^()]{3,120}\)"), 1),
)
ITEMS_PER_KIND_SHARE = 3  # knowledge items per kind: up to n / this many


def knowledge_answers(texts: list[str]) -> dict[str, list[str]]:
    """Every answer of each kind found in `texts` (the domain's training documents): the distractor pools."""
    found: dict[str, Counter] = {kind: Counter() for kind, _, _ in KNOWLEDGE_PATTERNS}
    for text in texts:
        for sentence in SENTENCE_END.split(text):
            sentence = " ".join(sentence.split())
            for kind, pattern, group in KNOWLEDGE_PATTERNS:
                for m in pattern.finditer(sentence):
                    found[kind][m.group(group)] += 1
    return {kind: sorted(c, key=lambda a: (-c[a], a))[:DISTRACTOR_POOL] for kind, c in found.items()}


def knowledge_items(texts: list[str], pools: dict[str, list[str]], *, n: int, k: int, seed: int) -> list[Probe]:
    """Up to n multiple-choice items from held-out texts, at most n / ITEMS_PER_KIND_SHARE of each kind."""
    per_kind = max(1, n // ITEMS_PER_KIND_SHARE)
    items: list[Probe] = []
    for kind, pattern, group in KNOWLEDGE_PATTERNS:
        pool, taken = pools.get(kind) or [], 0
        for text in texts:
            for sentence in SENTENCE_END.split(text):
                sentence = " ".join(sentence.split())
                m = pattern.search(sentence) if MIN_SENTENCE_CHARS <= len(sentence) <= MAX_SENTENCE_CHARS else None
                others = [a for a in pool if m is not None and a != m.group(group) and a not in sentence]
                if m is None or len(others) < k - 1 or taken >= per_kind:
                    continue
                rng = random.Random(seed * 1_000_003 + 7919 * len(items) + 1)
                candidates = [m.group(group), *rng.sample(others, k - 1)]
                rng.shuffle(candidates)
                items.append(Probe(sentence, m.start(group), m.end(group), m.group(group), candidates, kind))
                taken += 1
    return items


def domain_probes(domain_texts: list[str], general_texts: list[str], tokenizer, probe_texts: list[str], *, n: int, k: int,
                  seed: int, general_tokenizer=None) -> list[Probe]:
    """Term probes (up to n) from the most salient specific terms, then knowledge items (up to n)
    whose distractors come from the domain's training texts; [] when n is 0."""
    if not n:
        return []
    terms = salient_terms(domain_texts, general_texts, tokenizer, general_tokenizer=general_tokenizer)
    return (make_probes(probe_texts, terms, n=n, k=k, seed=seed)
            + knowledge_items(probe_texts, knowledge_answers(domain_texts), n=n, k=k, seed=seed))


def rank_of_answer(scores: list[float], answer_index: int) -> int:
    """1-based rank of the answer; candidates scoring as high as the answer rank above it (ties count against)."""
    truth = scores[answer_index]
    return 1 + sum(1 for i, s in enumerate(scores) if i != answer_index and s >= truth)


def summarise(ranks: list[int], k: int) -> dict[str, float | int]:
    """top-1 accuracy and mean reciprocal rank, with chance levels for K candidates."""
    n = max(len(ranks), 1)
    return {
        "top1": sum(r == 1 for r in ranks) / n,
        "mrr": sum(1 / r for r in ranks) / n,
        "probes": len(ranks),
        "candidates": k,
    }


def ranks_of_answers(probes: list[Probe], scores: list[list[float]]) -> list[int]:
    return [rank_of_answer(s, p.candidates.index(p.answer)) for p, s in zip(probes, scores)]


@torch.no_grad()
def score_probes(model, tokenizer, probes: list[Probe], objective: str, *, device, amp_dtype) -> list[list[float]]:
    """Each candidate's score, per probe, for a clm or mlm model (higher = preferred)."""
    model.eval()
    encoder = document_encoder(tokenizer)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out = []
    for probe in probes:
        if objective == "mlm":
            out.append(_mlm_scores(model, encoder, probe, eos, pad, tokenizer.mask_token_id, device, amp_dtype))
        else:  # a clm sentence opens as a held-out document does: BOS where the model expects it
            out.append(_clm_scores(model, encoder, probe, document_opener(tokenizer) or eos, pad, device, amp_dtype))
    return out


def _clm_scores(model, encoder, probe: Probe, opener: int, pad: int, device, amp_dtype) -> list[float]:
    """Σ ln p(token) of [EOS or BOS] + sentence, one row per candidate."""
    seqs = [[opener, *e.ids] for e in encoder.encode_batch_fast([probe.with_candidate(c) for c in probe.candidates],
                                                              add_special_tokens=False)]
    ids, attn = _pad(seqs, pad)
    with autocast(device, amp_dtype):
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
    logp = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)  # (K, T-1)
    return (logp * attn[:, 1:].to(device)).sum(-1).tolist()


def _mlm_scores(model, encoder, probe: Probe, eos: int, pad: int, mask: int | None, device, amp_dtype) -> list[float]:
    """Pseudo-log-likelihood of each candidate's tokens: one row per (candidate, token) with that token masked."""
    if mask is None:
        raise ValueError("an mlm cloze needs a tokenizer with a mask token")
    rows, owners, targets = [], [], []
    for c_index, cand in enumerate(probe.candidates):
        enc = encoder.encode(probe.with_candidate(cand), add_special_tokens=False)
        seq = [*enc.ids, eos]
        lo, hi = probe.start, probe.start + len(cand)
        positions = [p for p, (a, b) in enumerate(enc.offsets) if a < hi and b > lo]
        for p in positions:
            row = list(seq)
            row[p] = mask
            rows.append(row)
            owners.append(c_index)
            targets.append((p, seq[p]))
    ids, attn = _pad(rows, pad)
    with autocast(device, amp_dtype):
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
    scores = [0.0] * len(probe.candidates)
    for row, (owner, (p, tok)) in enumerate(zip(owners, targets)):
        scores[owner] += F.log_softmax(logits[row, p], dim=-1)[tok].item()
    return scores


def _pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    return ids, attn
