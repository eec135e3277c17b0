"""Pack stage: corpus + tokenizer → fixed-length blocks of token ids in .npy shards, no padding.

Each split is one stream: documents in corpus order, each encoded as plain text and followed by
EOS, cut into blocks of seq_len tokens. A document cut at a block end carries on in the next
block; only the final incomplete block of each split is dropped (and counted). Because special
tokens are never recognised inside text (see `selfsup.tokens.document_encoder`), EOS occurs in the
stream exactly at document ends, so the boundaries can be read off the tokens themselves.

Files in out_dir:

    train-00000.npy         1-D uint16 (vocab <= 65536) or uint32 token ids, a whole number of blocks
    train-00000.docs.npy    int64 offsets in that shard where a document starts (just after an EOS)
    validation-00000.npy    validation documents only: never mixed with training blocks
    index.json              seq_len, dtype, vocab_size, eos_id and, per split, blocks/tokens/shards
    manifest.json           sha256 of every file, written last

Encoding uses tiktoken where it gives the tokenizer's exact ids, else `tokenizers`
(`selfsup.tokens.fast_encoder`); the manifest names the engine. The cutting into blocks depends
only on the concatenated stream, never on how it arrived, so `selfsup pack --shard i/N` pieces
joined by `--merge` (pieces.py) give these same files byte for byte.

The corpus is read once (reader.py): each batch holds documents of both splits, encoded together
and routed to its split's stream. Memory stays constant in the corpus size: a shard is flushed as
soon as it fills, so at most one shard per split plus two batches (one read ahead) are held.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import transformers

from selfsup.config import PackConfig
from selfsup.errors import UsageError
from selfsup.ingest import corpus_parts
from selfsup.manifest import MANIFEST, write_json_atomic, write_manifest
from selfsup.pack.reader import corpus_rows, iter_documents, read_ahead
from selfsup.tokens.fast_encoder import TiktokenEncoder, TokenizersEncoder, fast_document_encoder
from selfsup.tokens.load import document_opener, load_tokenizer, special_ids, vocab_size

SPLITS = ("train", "validation")
INDEX = "index.json"
UINT16_VOCAB_LIMIT = 65536  # ids 0..65535 fit uint16
_OUR_FILES = re.compile(r"^(train|validation)-\d{5,}(\.docs)?\.npy$")


def token_dtype(vocab: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: uint16 halves disk and page-cache use."""
    return np.dtype(np.uint16) if vocab <= UINT16_VOCAB_LIMIT else np.dtype(np.uint32)


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What the packed files record about the tokenizer: the same for a single run and for pieces."""

    vocab_size: int
    eos_id: int
    dtype: np.dtype
    opener_id: int | None = None  # a BOS before each document, for tokenizers whose models expect one (tokens/load.py)


@dataclass(slots=True)
class EncodedChunk:
    """Some documents of one split, encoded: their tokens (each followed by EOS) and lengths (EOS included)."""

    tokens: np.ndarray  # (sum(lengths),) in the shard dtype
    lengths: np.ndarray  # (documents,) int64, every one >= 1
    skipped_empty: int = 0  # documents that encoded to no token at all (left out)
    text_bytes: int = 0  # UTF-8 bytes of the documents' text, skipped ones included


def pack_corpus(corpus_dir: Path, tokenizer_dir: Path, out_dir: Path, cfg: PackConfig, fingerprint: str) -> dict[str, Any]:
    """Encode every document of both splits and write the shards, index and manifest; returns the manifest."""
    started = time.perf_counter()
    corpus_parts(corpus_dir)  # a missing corpus is a usage error, before anything is touched
    tok, facts = open_tokenizer(tokenizer_dir)
    encoder = fast_document_encoder(tok)
    try:
        chunks = encode_rows(corpus_dir, range(corpus_rows(corpus_dir)), encoder, facts, cfg.batch_documents)
        return write_pack(Path(out_dir), chunks, cfg, facts, fingerprint, started, encoders=[encoder.engine])
    finally:
        encoder.close()


def open_tokenizer(tokenizer_dir: Path) -> tuple[transformers.PreTrainedTokenizerFast, StreamFacts]:
    """The tokenizer and the facts the shards record; UsageError when it has no EOS to end documents with."""
    tok = load_tokenizer(tokenizer_dir)
    eos = special_ids(tok)["eos"]
    if eos is None:
        raise UsageError(f"the tokenizer in {tokenizer_dir} has no eos token to end documents with; retrain or pick another tokenizer")
    vocab = vocab_size(tok)
    return tok, StreamFacts(vocab, eos, token_dtype(vocab), document_opener(tok))


def encode_rows(
    corpus_dir: Path, rows: range, encoder: TiktokenEncoder | TokenizersEncoder, facts: StreamFacts, batch_size: int
) -> Iterator[tuple[str, EncodedChunk]]:
    """(split, chunk) for the corpus rows `rows`, in corpus order: each batch read once, encoded once, routed by split."""
    for texts, splits in read_ahead(iter_documents(corpus_dir, rows, batch_size)):
        encoded = encoder.encode_batch(texts)
        for split in SPLITS:
            picked = [i for i, s in enumerate(splits) if s == split]
            if picked:
                chunk = join_documents([encoded[i] for i in picked], facts.eos_id, facts.dtype, facts.opener_id)
                chunk.text_bytes = sum(len(texts[i].encode("utf-8")) for i in picked)
                yield split, chunk


def join_documents(docs: Sequence[Sequence[int] | np.ndarray], eos: int, dtype: np.dtype,
                   opener: int | None = None) -> EncodedChunk:
    """Concatenate each non-empty document's ids followed by EOS (and preceded by `opener`, if given)."""
    lengths = np.fromiter((len(ids) for ids in docs), dtype=np.int64, count=len(docs))
    keep = lengths > 0
    head = 0 if opener is None else 1
    lengths = lengths[keep] + 1 + head  # + EOS (+ BOS)
    tokens = np.empty(int(lengths.sum()), dtype=dtype)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    for ids, start, end in zip((d for d in docs if len(d)), starts.tolist(), ends.tolist()):
        tokens[start + head : end - 1] = ids
    if opener is not None:
        tokens[starts] = opener
    tokens[ends - 1] = eos
    return EncodedChunk(tokens, lengths, skipped_empty=int((~keep).sum()))


def write_pack(
    out_dir: Path,
    chunks: Iterable[tuple[str, EncodedChunk]],
    cfg: PackConfig,
    facts: StreamFacts,
    fingerprint: str,
    started: float,
    encoders: Sequence[str],
) -> dict[str, Any]:
    """Cut each split's stream (the chunks of that split, in corpus order) into shards; write index and manifest last."""
    out_dir = _fresh_out_dir(out_dir)
    writers = {split: ShardWriter(out_dir, split, cfg.seq_len, cfg.shard_tokens, facts.dtype) for split in SPLITS}
    text_bytes = 0
    for split, chunk in chunks:
        writers[split].add_chunk(chunk)
        text_bytes += chunk.text_bytes
    splits = {split: writer.close() for split, writer in writers.items()}
    if splits["train"]["blocks"] == 0:
        raise UsageError(
            f"corpus has only {splits['train']['dropped_tail_tokens']} training tokens, fewer than one block of "
            f"seq_len={cfg.seq_len}; lower [pack] seq_len or add documents"
        )

    index = {"seq_len": cfg.seq_len, "dtype": facts.dtype.name, "vocab_size": facts.vocab_size, "eos_id": facts.eos_id,
             "opener_id": facts.opener_id, "splits": splits}
    write_json_atomic(out_dir / INDEX, index)

    seconds = time.perf_counter() - started
    kept = sum(s["tokens"] for s in splits.values())
    total = kept + sum(s["dropped_tail_tokens"] for s in splits.values())
    extra = {
        "splits": {name: {k: v for k, v in s.items() if k != "shards"} for name, s in splits.items()},
        "tokens_kept_share": kept / total if total else 0.0,
        "dtype": facts.dtype.name,
        "seq_len": cfg.seq_len,
        "vocab_size": facts.vocab_size,
        "eos_id": facts.eos_id,
        "text_bytes": text_bytes,
        "encoder": "+".join(sorted(set(encoders))),
        "seconds": round(seconds, 3),
        "mb_per_s": round(text_bytes / 1e6 / seconds, 3) if seconds > 0 else None,
    }
    return write_manifest(out_dir, stage="pack", fingerprint=fingerprint, extra=extra)


class ShardWriter:
    """Appends documents to one split's token stream and writes whole-block shards as they fill.

    The shards depend only on the stream (tokens and document starts), not on how it is chunked:
    that is what makes a merge of pieces equal a single run.
    """

    def __init__(self, out_dir: Path, split: str, seq_len: int, shard_tokens: int, dtype: np.dtype) -> None:
        self.out_dir, self.split, self.seq_len, self.dtype = out_dir, split, seq_len, dtype
        self.capacity = max(1, shard_tokens // seq_len) * seq_len  # whole blocks, at least one
        self._pending: list[np.ndarray] = []  # tokens not yet in a shard
        self._pending_starts: list[np.ndarray] = []  # stream positions where those documents start
        self.written = 0  # stream position of the first pending token
        self.total = 0  # tokens appended so far
        self.documents = 0
        self.skipped_empty = 0
        self.shards: list[dict[str, Any]] = []

    def add_documents(self, docs: Sequence[Sequence[int] | np.ndarray], eos: int) -> None:
        """Append each document's ids followed by EOS; documents that encode to nothing are skipped."""
        self.add_chunk(join_documents(docs, eos, self.dtype))

    def add_chunk(self, chunk: EncodedChunk) -> None:
        """Append already joined documents (tokens with their EOS, and each one's length)."""
        ends = np.cumsum(chunk.lengths)
        self._pending.append(chunk.tokens.astype(self.dtype, copy=False))
        self._pending_starts.append(ends - chunk.lengths + self.total)
        self.total += len(chunk.tokens)
        self.documents += len(chunk.lengths)
        self.skipped_empty += chunk.skipped_empty
        if self.total - self.written >= self.capacity:
            self._flush_full_shards()

    def _flush_full_shards(self) -> None:
        buf = np.concatenate(self._pending)
        starts = np.concatenate(self._pending_starts)
        pos = 0
        while len(buf) - pos >= self.capacity:
            self._write_shard(buf[pos : pos + self.capacity], starts)
            pos += self.capacity
        self._pending = [buf[pos:].copy()]  # copy: lets the big buffer go
        self._pending_starts = [starts[starts >= self.written]]

    def _write_shard(self, tokens: np.ndarray, starts: np.ndarray) -> None:
        """Write tokens (the stream from self.written on) as the next shard; advance self.written."""
        lo, hi = np.searchsorted(starts, [self.written, self.written + len(tokens)])
        name = f"{self.split}-{len(self.shards):05d}"
        np.save(self.out_dir / f"{name}.npy", tokens, allow_pickle=False)
        np.save(self.out_dir / f"{name}.docs.npy", (starts[lo:hi] - self.written).astype(np.int64), allow_pickle=False)
        blocks = len(tokens) // self.seq_len
        self.shards.append({"file": f"{name}.npy", "docs_file": f"{name}.docs.npy", "blocks": blocks, "tokens": len(tokens)})
        self.written += len(tokens)

    def close(self) -> dict[str, Any]:
        """Write the last whole blocks; drop (and count) the final incomplete block. Returns the split's index."""
        buf = np.concatenate(self._pending) if self._pending else np.empty(0, self.dtype)
        starts = np.concatenate(self._pending_starts) if self._pending_starts else np.empty(0, np.int64)
        whole = len(buf) // self.seq_len * self.seq_len
        if whole:
            self._write_shard(buf[:whole], starts)
        self._pending, self._pending_starts = [], []
        return {
            "blocks": sum(s["blocks"] for s in self.shards),
            "tokens": sum(s["tokens"] for s in self.shards),
            "documents": self.documents,
            "skipped_empty_documents": self.skipped_empty,
            "dropped_tail_tokens": self.total - self.written,
            "shards": self.shards,
        }


def _fresh_out_dir(out_dir: Path) -> Path:
    """Create out_dir, or empty it of an earlier pack's files; refuse to clear anything else."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = sorted(out_dir.iterdir())
    for p in entries:
        ours = p.name in (INDEX, MANIFEST) or p.name.endswith(".tmp") or _OUR_FILES.match(p.name)
        if not (p.is_file() and ours):
            raise UsageError(f"pack output directory {out_dir} holds {p.name}, which is not a shard file; choose an empty or new directory")
    (out_dir / MANIFEST).unlink(missing_ok=True)  # first: a half-cleared directory is never trusted
    for p in entries:
        p.unlink(missing_ok=True)
    return out_dir
