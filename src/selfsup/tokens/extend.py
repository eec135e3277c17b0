"""Extend a reused tokenizer with the domain terms it splits into many pieces (`[tokenizer] extend`).

A base model's tokenizer was built for general text: an identifier such as `sqlite3_prepare_v2`
costs it a dozen tokens, every time it occurs. Adding the corpus's frequent, long-split terms as
whole tokens makes sequences shorter (more text per block, cheaper training and generation) and
gives each term one embedding to learn. The model's row for a new token starts as the mean of its
old pieces' rows (`selfsup.models.extend`), so it begins from what the base already knows; that
is why `extension.json` keeps each term's old piece ids.

Mining is deterministic: word and identifier forms are counted on the train split (a capped
prefix of it), scored by the tokens they would save (count × (pieces − 1)), and the best N are
kept, ties broken by the text. Tokenizers whose tokens carry the preceding space (byte-level BPE:
GPT-2, Llama 3, Qwen2, SmolLM; SentencePiece) get the term with its leading space, the form it has
inside a sentence; a bare form (after a newline or a bracket) is a separate candidate that
matches only as a whole word. The fertility (tokens per word) before and after is measured on the
same text and recorded in the tokenizer manifest.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tokenizers import AddedToken

from selfsup.errors import StageFailure, UsageError
from selfsup.manifest import MANIFEST, read_manifest, write_manifest
from selfsup.tokens.load import document_encoder, load_tokenizer, vocab_size

EXTENSION_FILE = "extension.json"
MIN_TERM_COUNT = 3  # rarer forms save too little to earn an embedding row
MIN_PIECES = 3  # "long-split": a term the base already covers in one or two tokens is left alone
MIN_TERM_CHARS = 4
DECODER_SENTINELS = 100  # span on a decoder base: enough for T5's defaults on documents of up to ~2,000 tokens
SAMPLE_CHARS = 20_000_000  # text mined and measured: enough to rank terms, seconds of regex work
# A word or identifier: starts with a letter or underscore, then letters, digits, underscores.
TERM = re.compile(r"(?<!\w)[^\W\d]\w{%d,}(?!\w)" % (MIN_TERM_CHARS - 1))


def extend_tokenizer(corpus_dir: Path, tokenizer_dir: Path, n_terms: int, fingerprint: str,
                     max_chars: int = SAMPLE_CHARS) -> dict[str, Any]:
    """Add up to n_terms domain terms to the tokenizer in `tokenizer_dir` (a reused one); returns its manifest.

    Writes `extension.json` (each term with its new id and old piece ids) and rewrites the
    manifest with an `extension` record: terms added, fertility before and after.
    """
    tokenizer_dir = Path(tokenizer_dir)
    previous = read_manifest(tokenizer_dir)
    if previous is None or previous.get("stage") != "tokenizer":
        raise UsageError(f"{tokenizer_dir} holds no finished tokenizer to extend; run the tokenizer stage first")
    texts = _sample_texts(corpus_dir, max_chars)
    if not texts:
        raise UsageError(f"corpus {corpus_dir} has no training documents (split 'train') to mine domain terms from")
    tok = load_tokenizer(tokenizer_dir)
    base_encoder = document_encoder(tok)
    space_form = _tokens_carry_spaces(tok)
    normalize = None if space_form else _normalizer(tok)

    counts = count_term_forms(texts, space_form=space_form, normalize=normalize)
    terms = select_terms(counts, base_encoder, n_terms)
    fertility_before = fertility(base_encoder, texts)

    (tokenizer_dir / MANIFEST).unlink(missing_ok=True)  # the directory changes: it is not trusted until rewritten
    tok.add_tokens([
        AddedToken(t["token"], single_word=not t["token"].startswith(" "), normalized=not space_form) for t in terms
    ])
    tok.save_pretrained(str(tokenizer_dir))
    tok = load_tokenizer(tokenizer_dir)  # check the saved directory as the other stages will load it
    encoder = document_encoder(tok)
    for t in terms:
        t["id"] = tok.convert_tokens_to_ids(t["token"])
        ids = encoder.encode(t["token"], add_special_tokens=False).ids
        if ids != [t["id"]]:
            raise StageFailure(f"extended tokenizer in {tokenizer_dir} encodes the new term {t['token']!r} as {ids}")
    fertility_after = fertility(encoder, texts)
    record = {
        "base_tokenizer": previous.get("from"),
        "space_prefixed": space_form,
        "terms": [{k: t[k] for k in ("token", "id", "pieces", "count")} for t in terms],
    }
    (tokenizer_dir / EXTENSION_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    extra = {k: v for k, v in previous.items() if k not in ("stage", "fingerprint", "created", "files")}
    extra["vocab_size"] = vocab_size(tok)
    extra["extension"] = {
        "requested": n_terms,
        "added": len(terms),
        "file": EXTENSION_FILE,
        "measured_chars": sum(map(len, texts)),
        "fertility_before": fertility_before,
        "fertility_after": fertility_after,
        "fertility_gain": round(1 - fertility_after / fertility_before, 6) if fertility_before else 0.0,
        "examples": [t["token"] for t in terms[:10]],
    }
    return write_manifest(tokenizer_dir, stage="tokenizer", fingerprint=fingerprint, extra=extra)


def span_sentinels(n: int = DECODER_SENTINELS) -> list[str]:
    return [f"<extra_id_{i}>" for i in range(n)]


FIM_SENTINELS = ["<fim_prefix>", "<fim_middle>", "<fim_suffix>"]


def add_sentinels(tokenizer_dir: Path, tokens: list[str], fingerprint: str) -> dict[str, Any]:
    """Give a reused decoder tokenizer the objective sentinels it lacks; returns its manifest.

    `span` on a decoder base (objectives/span.py `DecoderSpanCorruption`) needs `<extra_id_N>`,
    `fim` needs `<fim_prefix>`, `<fim_middle>`, `<fim_suffix>`; many decoder bases have neither
    (SmolLM2 as imported from its GGUF has no FIM tokens). They are added as special tokens (never
    split, dropped by skip_special_tokens) and recorded in `extension.json` like mined terms, so
    each embedding row starts as the mean of the rows the base used to spell the marker
    (`selfsup.models.extend`): distinct, and close to what the model already reads for it.
    Sentinels the tokenizer already has are kept as they are.
    """
    tokenizer_dir = Path(tokenizer_dir)
    previous = read_manifest(tokenizer_dir)
    if previous is None or previous.get("stage") != "tokenizer":
        raise UsageError(f"{tokenizer_dir} holds no finished tokenizer to add sentinels to; run the tokenizer stage first")
    tok = load_tokenizer(tokenizer_dir)
    vocab = tok.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    base_encoder = document_encoder(tok)
    pieces = {t: base_encoder.encode(t, add_special_tokens=False).ids for t in missing}
    (tokenizer_dir / MANIFEST).unlink(missing_ok=True)  # the directory changes: it is not trusted until rewritten
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    tok.save_pretrained(str(tokenizer_dir))
    tok = load_tokenizer(tokenizer_dir)
    added = []
    for t in missing:
        token_id = tok.convert_tokens_to_ids(t)
        if tok(t, add_special_tokens=False).input_ids != [token_id]:
            raise StageFailure(f"tokenizer in {tokenizer_dir} does not read the added sentinel {t!r} as one token")
        added.append({"token": t, "id": token_id, "pieces": pieces[t], "count": 0, "special": True})
    record = read_extension(tokenizer_dir) or {"base_tokenizer": previous.get("from"),
                                               "space_prefixed": _tokens_carry_spaces(tok), "terms": []}
    record["terms"] += added
    (tokenizer_dir / EXTENSION_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    extra = {k: v for k, v in previous.items() if k not in ("stage", "fingerprint", "created", "files")}
    extra["vocab_size"] = vocab_size(tok)
    extra["sentinels"] = {"added": len(added), "tokens": [t["token"] for t in added], "file": EXTENSION_FILE,
                          "why": "objective sentinels (span: <extra_id_N>, fim: <fim_*>) the base's tokenizer lacked"}
    return write_manifest(tokenizer_dir, stage="tokenizer", fingerprint=fingerprint, extra=extra)


def count_term_forms(texts: list[str], *, space_form: bool, normalize=None) -> Counter[str]:
    """How often each term form occurs: " term" after a space (when tokens carry spaces), else "term"."""
    counts: Counter[str] = Counter()
    for text in texts:
        for m in TERM.finditer(text):
            word = m.group()
            if space_form:
                counts[" " + word if m.start() > 0 and text[m.start() - 1] == " " else word] += 1
            else:
                counts[normalize(word) if normalize else word] += 1
    return counts


def select_terms(counts: Counter[str], base_encoder, n_terms: int) -> list[dict[str, Any]]:
    """The n_terms forms that save the most tokens, with their base pieces; deterministic."""
    frequent = sorted(form for form, c in counts.items() if c >= MIN_TERM_COUNT)
    if not frequent or n_terms <= 0:
        return []
    pieces = [e.ids for e in base_encoder.encode_batch_fast(frequent, add_special_tokens=False)]
    candidates = [
        {"token": form, "pieces": ids, "count": counts[form], "saves": counts[form] * (len(ids) - 1)}
        for form, ids in zip(frequent, pieces)
        if len(ids) >= MIN_PIECES
    ]
    candidates.sort(key=lambda t: (-t["saves"], t["token"]))
    return candidates[:n_terms]


def fertility(encoder, texts: list[str]) -> float:
    """Tokens per whitespace-separated word over `texts`."""
    words = sum(len(t.split()) for t in texts)
    tokens = sum(len(e.ids) for e in encoder.encode_batch_fast(texts, add_special_tokens=False))
    return round(tokens / words, 6) if words else 0.0


def read_extension(tokenizer_dir: Path) -> dict[str, Any] | None:
    """The tokenizer directory's extension record, or None when its vocabulary was not extended."""
    path = Path(tokenizer_dir) / EXTENSION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        terms = record["terms"]
        if not all(isinstance(t["id"], int) and t["pieces"] for t in terms):
            raise ValueError("a term without id or pieces")
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a valid extension record ({exc}); run the tokenizer stage again") from None
    return record


def _sample_texts(corpus_dir: Path, max_chars: int) -> list[str]:
    from selfsup.ingest import iter_texts  # here: the model builder reads extension.json without the ingest stack

    texts, chars = [], 0
    for batch in iter_texts(corpus_dir, split="train"):
        for text in batch:
            texts.append(text[: max_chars - chars])
            chars += len(texts[-1])
            if chars >= max_chars:
                return texts
    return texts


def _tokens_carry_spaces(tok) -> bool:
    """True when a word after a space tokenizes differently from the bare word (Ġword, ▁word)."""
    enc = document_encoder(tok)
    return enc.encode(" domain", add_special_tokens=False).tokens != enc.encode("domain", add_special_tokens=False).tokens


def _normalizer(tok):
    """The tokenizer's own normalizer (e.g. BERT's lowercasing), so added terms match normalized text."""
    normalizer = tok.backend_tokenizer.normalizer
    return normalizer.normalize_str if normalizer is not None else None
