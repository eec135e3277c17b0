"""Load a tokenizer directory, and the few facts about it that the other stages need.

Every stage reads the tokenizer through `load_tokenizer` (transformers' AutoTokenizer, local
files only, never `trust_remote_code`), so what the packer encodes and what evaluation and export
see is one and the same tokenizer.

Documents are encoded with `document_encoder(tok)`: a private copy of the Rust tokenizer with
truncation and padding off (some shipped tokenizer.json files truncate at 128 or 512 tokens) and
with special tokens *not* recognised inside text. A document that literally contains "</s>" is
text about "</s>", not the end of a document; so in a packed stream EOS appears exactly once per
document, at its end, and every byte of a document is accounted for by its tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers
from tokenizers import Tokenizer

from selfsup.errors import UsageError


def load_tokenizer(tokenizer_dir: Path) -> transformers.PreTrainedTokenizerFast:
    """AutoTokenizer from a local directory; UsageError (one line) if there is no fast tokenizer there."""
    tokenizer_dir = Path(tokenizer_dir)
    if not tokenizer_dir.is_dir():
        raise UsageError(f"tokenizer directory {tokenizer_dir} does not exist; run `selfsup tokenizer` first")
    try:
        if _generic_fast_tokenizer(tokenizer_dir):
            # tokenizer.json as written: AutoTokenizer would pick a class from config.json's model_type (a
            # "qwen2" directory gets Qwen2Tokenizer), which rebuilds its own pre-tokenizer over the file's, so
            # a base directory and its tokenizer copied into WORKDIR/tokenizer would read text differently.
            tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir), local_files_only=True)
        else:
            tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as exc:  # transformers raises many types (OSError, ValueError, KeyError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{tokenizer_dir} has no tokenizer that transformers can load ({first}); "
            "point at a directory with tokenizer.json (+ tokenizer_config.json)"
        ) from None
    if getattr(tok, "backend_tokenizer", None) is None:
        raise UsageError(
            f"the tokenizer in {tokenizer_dir} is not a fast (Rust `tokenizers`) tokenizer; "
            "add a tokenizer.json to the directory (save it with a fast tokenizer)"
        )
    return tok


def _generic_fast_tokenizer(tokenizer_dir: Path) -> bool:
    """Whether the directory's tokenizer_config.json names the generic fast class over a tokenizer.json."""
    try:
        config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (tokenizer_dir / "tokenizer.json").is_file() and config.get("tokenizer_class") in (
        "TokenizersBackend", "PreTrainedTokenizerFast")


class SpecialIds(dict):
    """name → id (None where absent), carrying the tokenizer it was read from (`.tokenizer`).

    Objectives are built from these ids alone (`get_objective(cfg, ids, vocab_size)`); the few that
    also need the vocabulary's strings (whole-word masking finds word starts in them) read
    `.tokenizer`, so the train loop's call needs no second argument.
    """

    tokenizer: transformers.PreTrainedTokenizerBase | None = None


# Objective sentinels looked up by content, so a reused tokenizer that has them (SmolLM2 has the
# <fim_*> tokens, T5 has <extra_id_N>) serves `fim` / `span` too. Listed only when present.
_SENTINELS = ["fim_prefix", "fim_middle", "fim_suffix", *(f"extra_id_{i}" for i in range(100))]


def special_ids(tok: transformers.PreTrainedTokenizerBase) -> SpecialIds:
    """Ids of bos / eos / pad / mask / unk (None where the tokenizer has none), then any sentinels.

    eos is the end-of-document marker the packer appends: the tokenizer's eos token, else its sep
    token (BERT-style encoders have [SEP] and no eos). pad falls back to eos, because packed
    blocks need no padding and a model only needs *some* id to pad generation batches with.
    Sentinels (`fim_prefix`, `fim_middle`, `fim_suffix`, `extra_id_N`) are added only where the
    vocabulary holds `<name>` as a token.
    """
    eos = tok.eos_token_id if tok.eos_token_id is not None else getattr(tok, "sep_token_id", None)
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    ids = SpecialIds({
        "bos": tok.bos_token_id,
        "eos": eos,
        "pad": pad,
        "mask": tok.mask_token_id,
        "unk": tok.unk_token_id,
    })
    vocab = tok.get_vocab()
    for name in _SENTINELS:
        if f"<{name}>" in vocab:
            ids[name] = vocab[f"<{name}>"]
    ids.tokenizer = tok
    return ids


def vocab_size(tok: transformers.PreTrainedTokenizerBase) -> int:
    """One more than the largest token id (added tokens included): the size an embedding table needs."""
    return max(len(tok), max(tok.get_vocab().values(), default=-1) + 1)


def document_opener(tok: transformers.PreTrainedTokenizerBase) -> int | None:
    """The BOS id where the tokenizer puts BOS before text by convention (Gemma, Llama), else None.

    Such models read text without BOS as a strange context: Gemma-3-270M scored 4.6% worse bits
    per byte on held-out manual pages opened with EOS than with BOS (1.296 against 1.236). So
    packing puts it before each document and evaluation opens each document with it; where BOS is
    EOS or is never added (GPT-2, SmolLM2, the BPEs selfsup trains), documents open with EOS.
    """
    bos = tok.bos_token_id
    if bos is None or bos == special_ids(tok)["eos"]:
        return None
    return bos if tok("a").input_ids[:1] == [bos] else None


def document_encoder(tok: transformers.PreTrainedTokenizerFast) -> Tokenizer:
    """A private copy of the Rust tokenizer for encoding whole documents as plain text.

    Use it as `document_encoder(tok).encode_batch_fast(texts, add_special_tokens=False)`: all cores
    (rayon), no truncation, no padding, special-token strings in the text are encoded as text.
    """
    enc = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    enc.no_truncation()
    enc.no_padding()
    enc.encode_special_tokens = True
    return enc
