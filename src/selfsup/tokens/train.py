"""Tokenizer stage: train a byte-level BPE on the corpus, or reuse a base model's tokenizer.

Byte-level BPE (GPT-2 style) has the 256 byte symbols in its alphabet, so any text is encodable
with no unknown tokens, and bits-per-byte is exact (see byte_lengths.py). Special tokens are
added first, so their ids are fixed whatever the corpus: <pad>=0, <s>=1, </s>=2, <unk>=3,
<mask>=4, then the objectives' sentinels <fim_prefix>=5, <fim_middle>=6, <fim_suffix>=7 and
<extra_id_0..31>=8..39 (reserved for every objective; see RESERVED_TOKENS). The tokenizer adds no BOS/EOS by itself (no post-processor): `tok("hello")` returns the
text's tokens only, and the packer appends EOS to each document.

The output directory is a plain Hugging Face tokenizer directory (tokenizer.json +
tokenizer_config.json) that `transformers.AutoTokenizer.from_pretrained` loads; its manifest is
written last.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from selfsup.config import TokenizerConfig
from selfsup.errors import StageFailure, UsageError
from selfsup.ingest import corpus_parts, iter_texts
from selfsup.manifest import MANIFEST, write_manifest
from selfsup.tokens.load import load_tokenizer, special_ids, vocab_size

# name -> token, in id order: the trainer adds them first, so these ids hold for every corpus.
SPECIAL_TOKENS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}

# Sentinels of the `fim` and `span` objectives, reserved at every tokenizer training (ids 5..39)
# whatever the objective: one tokenizer then serves every objective, a workdir's shards can be
# retrained with another objective, and an id never changes meaning. 35 ids of 8k are a 0.4% cost.
# 32 span sentinels cover T5 span corruption of blocks up to ~640 tokens at the T5 defaults.
FIM_TOKENS = {"fim_prefix": "<fim_prefix>", "fim_middle": "<fim_middle>", "fim_suffix": "<fim_suffix>"}
N_SPAN_SENTINELS = 32
SENTINEL_TOKENS = {f"extra_id_{i}": f"<extra_id_{i}>" for i in range(N_SPAN_SENTINELS)}
RESERVED_TOKENS = {**SPECIAL_TOKENS, **FIM_TOKENS, **SENTINEL_TOKENS}

# Files a Hugging Face tokenizer directory may hold: copied by `from`, cleared before a rerun.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
)


def train_tokenizer(corpus_dir: Path, out_dir: Path, cfg: TokenizerConfig, fingerprint: str) -> dict[str, Any]:
    """Write a tokenizer directory for the corpus; returns its manifest.

    Trains on the corpus's train split only (validation text must stay unseen), on at most
    cfg.max_train_chars characters. With cfg.from_dir set, copies that model's tokenizer instead.
    """
    if cfg.from_dir is not None:
        return reuse_tokenizer(Path(cfg.from_dir), out_dir, fingerprint)
    started = time.perf_counter()
    out_dir = _fresh_out_dir(out_dir)

    tok = Tokenizer(models.BPE())  # no unk_token: every byte is in the alphabet, nothing is unknown
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(RESERVED_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    fed = _Fed()
    batches = _capped_batches(iter_texts(corpus_dir, split="train"), cfg.max_train_chars, fed)
    tok.train_from_iterator(batches, trainer=trainer, length=_count_documents(corpus_dir))
    if fed.documents == 0:
        raise UsageError(f"corpus {corpus_dir} has no training documents (split 'train'); ingest some documents first")

    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        mask_token=SPECIAL_TOKENS["mask"],
        additional_special_tokens=[*FIM_TOKENS.values(), *SENTINEL_TOKENS.values()],
        # The tokenizer does not know the model's context length; export sets the model's.
        model_max_length=VERY_LARGE_INTEGER,
    )
    hf.save_pretrained(str(out_dir))

    # Check the saved directory as a user will load it, before committing it with the manifest.
    loaded = load_tokenizer(out_dir)
    ids = special_ids(loaded)
    expected = {name: i for i, name in enumerate(RESERVED_TOKENS)}
    if {k: ids[k] for k in expected} != expected:
        raise StageFailure(f"tokenizer saved in {out_dir} reloads with special ids {ids}, expected {expected}")
    return write_manifest(
        out_dir,
        stage="tokenizer",
        fingerprint=fingerprint,
        extra={
            "vocab_size": vocab_size(loaded),
            "trained_on_chars": fed.chars,
            "trained_on_documents": fed.documents,
            "special_tokens": {name: {"token": t, "id": ids[name]} for name, t in RESERVED_TOKENS.items()},
            "from": None,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


def reuse_tokenizer(from_dir: Path, out_dir: Path, fingerprint: str) -> dict[str, Any]:
    """Copy a base model's tokenizer files into out_dir (continued pretraining keeps its vocabulary)."""
    from_dir = Path(from_dir)
    present = [name for name in TOKENIZER_FILES if (from_dir / name).is_file()]
    if not from_dir.is_dir() or not present:
        raise UsageError(
            f"[tokenizer] from = {from_dir} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
            "point it at a Hugging Face model directory, or remove it to train a tokenizer on the corpus"
        )
    load_tokenizer(from_dir)  # fail on the source, with its name, before touching out_dir
    out_dir = _fresh_out_dir(out_dir)
    for name in present:
        shutil.copy2(from_dir / name, out_dir / name)
    tok = load_tokenizer(out_dir)
    if not (out_dir / "tokenizer.json").is_file():
        tok.save_pretrained(str(out_dir))  # only slow-format files were there: the packer needs tokenizer.json
    ids = special_ids(tok)
    if ids["eos"] is None:
        raise UsageError(
            f"the tokenizer in {from_dir} has no eos (or sep) token to end documents with; "
            "use a model whose tokenizer defines eos_token, or train one (remove [tokenizer] from)"
        )
    names = {"bos": tok.bos_token, "eos": tok.eos_token or tok.sep_token, "pad": tok.pad_token or tok.eos_token,
             "unk": tok.unk_token, "mask": tok.mask_token}
    return write_manifest(
        out_dir,
        stage="tokenizer",
        fingerprint=fingerprint,
        extra={
            "vocab_size": vocab_size(tok),
            "trained_on_chars": 0,
            "special_tokens": {k: {"token": names.get(k, f"<{k}>"), "id": ids[k]} for k in ids},
            "from": str(from_dir),
            "copied_files": present,
            "pad_falls_back_to_eos": tok.pad_token_id is None,
            "eos_falls_back_to_sep": tok.eos_token_id is None,
        },
    )


@dataclass(slots=True)
class _Fed:
    """What the trainer was actually fed (filled in while the generator runs)."""

    chars: int = 0
    documents: int = 0


def _capped_batches(batches: Iterator[list[str]], max_chars: int, fed: _Fed) -> Iterator[list[str]]:
    """Pass batches through until max_chars characters have been fed; the last text is cut to fit."""
    for batch in batches:
        out = []
        for text in batch:
            room = max_chars - fed.chars
            if room <= 0:
                break
            text = text[:room]
            out.append(text)
            fed.chars += len(text)
            fed.documents += 1
        if out:
            yield out
        if fed.chars >= max_chars:
            return


def _fresh_out_dir(out_dir: Path) -> Path:
    """Create out_dir, or empty it of an earlier tokenizer's files; refuse to clear anything else."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = set(TOKENIZER_FILES) | {MANIFEST, "extension.json"}  # extension.json: tokens/extend.py
    entries = sorted(out_dir.iterdir())
    for p in entries:
        if not (p.is_file() and (p.name in ours or p.name.endswith(".tmp"))):
            raise UsageError(
                f"tokenizer output directory {out_dir} holds {p.name}, which is not a tokenizer file; "
                "choose an empty or new directory"
            )
    (out_dir / MANIFEST).unlink(missing_ok=True)  # first: a half-cleared directory is never trusted
    for p in entries:
        p.unlink(missing_ok=True)
    return out_dir


def _count_documents(corpus_dir: Path) -> int:
    """Rows over all shards (both splits), from Parquet metadata alone: a cheap length hint."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in corpus_parts(corpus_dir))
