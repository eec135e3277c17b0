"""Fertility: how many pieces a tokenizer cuts the domain's text into.

A general tokenizer reused on a specialised corpus splits its terms into many short pieces: more
tokens per word, fewer bytes per token, so a fixed context window holds less of a document and
every rare term costs several predictions. Set beside a tokenizer of the same size trained on the
domain itself, the gap says how much a vocabulary `extend` (or a domain tokenizer) could win.

    tokens_per_word = tokens / whitespace-separated words
    bytes_per_token = UTF-8 bytes / tokens
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from selfsup.config import TokenizerConfig
from selfsup.tokens import document_encoder, load_tokenizer, train_tokenizer, vocab_size

DOMAIN_TOKENIZER_CHARS = 20_000_000  # the quick domain BPE reads at most this much of the corpus


def fertility(tokenizer, texts: list[str]) -> dict[str, float | int]:
    """Tokens per word and bytes per token of `tokenizer` over `texts` (special tokens not added)."""
    tokens = sum(len(e.ids) for e in document_encoder(tokenizer).encode_batch_fast(texts, add_special_tokens=False))
    words = sum(len(t.split()) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return {
        "tokens_per_word": tokens / max(words, 1),
        "bytes_per_token": n_bytes / max(tokens, 1),
        "tokens": tokens,
        "words": words,
        "bytes": n_bytes,
        "vocab_size": vocab_size(tokenizer),
    }


def domain_tokenizer(corpus_dir: Path, size: int, out_dir: Path):
    """A byte-level BPE of (up to) `size` tokens trained on the corpus's train split, as the tokenizer stage trains one."""
    cfg = TokenizerConfig(vocab_size=max(300, min(size, 2**20)), max_train_chars=DOMAIN_TOKENIZER_CHARS)
    train_tokenizer(corpus_dir, out_dir, cfg, fingerprint="fertility-domain-bpe")
    return load_tokenizer(out_dir)


def compare_fertility(tokenizers: dict[str, object], texts: list[str], corpus_dir: Path | None, domain_size: int | None) -> dict[str, dict]:
    """Fertility of each named tokenizer on `texts`, plus `domain`: a BPE of `domain_size` trained on
    the corpus (when given; a from-scratch run's own tokenizer already is one)."""
    out = {name: fertility(tok, texts) for name, tok in tokenizers.items()}
    if corpus_dir is not None and domain_size:
        with tempfile.TemporaryDirectory(prefix="selfsup-fertility-") as tmp:
            out["domain"] = fertility(domain_tokenizer(corpus_dir, domain_size, Path(tmp) / "tokenizer"), texts)
    return out
