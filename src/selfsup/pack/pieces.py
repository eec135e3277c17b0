"""Pack across machines: `selfsup pack --shard i/N` encodes one slice, `--merge` joins the slices.

Encoding is the expensive part of packing and each document encodes on its own, so N jobs of
any scheduler (a Slurm array, Kubernetes jobs) can each encode a deterministic slice: piece i of
N takes the corpus rows [i*R//N, (i+1)*R//N) of the R rows of all corpus parts, in corpus order.
A piece holds its documents' token streams, *not* blocks: the cutting into blocks must see the
whole stream of a split, so it happens at merge, over the pieces' streams concatenated in piece
order, which is corpus order. The merged directory is therefore byte for byte the one a single
`selfsup pack` writes (same shards, document offsets, index.json and manifest figures).

Pieces live next to the output, in `<out>-pieces/` unless `--pieces` says otherwise:

    piece-00002-of-00008/train-00000.npy          a chunk of the split's stream (tokens, EOS after each document)
    piece-00002-of-00008/train-00000.lengths.npy  int64 length of each of its documents, EOS included
    piece-00002-of-00008/manifest.json            commit marker: fingerprint, slice, per-split counts

A piece is trusted only when its manifest verifies with the pack fingerprint of the merge (same
corpus, tokenizer and [pack] settings); the merge names any piece that is missing or stale.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.config import PackConfig
from selfsup.errors import UsageError
from selfsup.ingest import corpus_parts
from selfsup.manifest import MANIFEST, read_manifest, verify_manifest, write_manifest
from selfsup.pack.pack import SPLITS, EncodedChunk, StreamFacts, encode_rows, open_tokenizer, write_pack
from selfsup.pack.reader import corpus_rows, slice_rows
from selfsup.tokens.fast_encoder import fast_document_encoder

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_PIECE = re.compile(r"^piece-(\d{5,})-of-(\d{5,})$")
_CHUNK = re.compile(r"^(train|validation)-\d{5,}(\.lengths)?\.npy$")


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' (0 <= i < N) → (i, N); UsageError naming the flag otherwise."""
    match = _SHARD.match(text)
    if not match or int(match[2]) < 1 or int(match[1]) >= int(match[2]):
        raise UsageError(f"--shard {text!r} is not i/N with 0 <= i < N (e.g. --shard 0/4 ... --shard 3/4, or $SLURM_ARRAY_TASK_ID/4)")
    return int(match[1]), int(match[2])


def default_pieces_dir(out_dir: Path) -> Path:
    """`<out>-pieces` beside the output: never inside it, so the merged directory holds only shard files."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + "-pieces")


def piece_name(index: int, count: int) -> str:
    return f"piece-{index:05d}-of-{count:05d}"


def pack_piece(
    corpus_dir: Path, tokenizer_dir: Path, pieces_dir: Path, cfg: PackConfig, fingerprint: str, index: int, count: int
) -> dict[str, Any]:
    """Encode slice `index` of `count` into `pieces_dir/piece-i-of-N/`; returns its manifest."""
    started = time.perf_counter()
    corpus_parts(corpus_dir)
    tok, facts = open_tokenizer(tokenizer_dir)
    rows = slice_rows(corpus_rows(corpus_dir), index, count)
    out = _fresh_piece_dir(Path(pieces_dir) / piece_name(index, count))
    encoder = fast_document_encoder(tok)
    try:
        splits = _write_chunks(out, encode_rows(corpus_dir, rows, encoder, facts, cfg.batch_documents), cfg.shard_tokens)
    finally:
        encoder.close()
    extra = {
        "piece": index, "pieces": count, "rows": [rows.start, rows.stop], "splits": splits, "encoder": encoder.engine,
        "vocab_size": facts.vocab_size, "eos_id": facts.eos_id, "opener_id": facts.opener_id, "dtype": facts.dtype.name,
        "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip
    return write_manifest(out, stage="pack-piece", fingerprint=fingerprint, extra=extra)


def _write_chunks(out: Path, chunks: Iterator[tuple[str, EncodedChunk]], chunk_tokens: int) -> dict[str, dict[str, int]]:
    """Write each split's stream as numbered (tokens, lengths) files of about `chunk_tokens` tokens each."""
    held: dict[str, list[EncodedChunk]] = {split: [] for split in SPLITS}
    tally = {split: {"files": 0, "documents": 0, "tokens": 0, "skipped_empty_documents": 0, "text_bytes": 0} for split in SPLITS}

    def flush(split: str) -> None:
        name = f"{split}-{tally[split]['files']:05d}"
        np.save(out / f"{name}.npy", np.concatenate([c.tokens for c in held[split]]), allow_pickle=False)
        np.save(out / f"{name}.lengths.npy", np.concatenate([c.lengths for c in held[split]]), allow_pickle=False)
        tally[split]["files"] += 1
        held[split].clear()

    for split, chunk in chunks:
        held[split].append(chunk)
        counts = tally[split]
        counts["documents"] += len(chunk.lengths)
        counts["tokens"] += len(chunk.tokens)
        counts["skipped_empty_documents"] += chunk.skipped_empty
        counts["text_bytes"] += chunk.text_bytes
        if sum(len(c.tokens) for c in held[split]) >= chunk_tokens:
            flush(split)
    for split in SPLITS:
        if held[split]:
            flush(split)
    return tally


def merge_pieces(pieces_dir: Path, out_dir: Path, cfg: PackConfig, fingerprint: str) -> dict[str, Any]:
    """Join every piece of `pieces_dir` into `out_dir`, cut into blocks as a single run would; returns the manifest."""
    started = time.perf_counter()
    pieces = _complete_pieces(Path(pieces_dir), fingerprint)
    first = pieces[0][1]
    facts = StreamFacts(first["vocab_size"], first["eos_id"], np.dtype(first["dtype"]), first.get("opener_id"))

    def chunks() -> Iterator[tuple[str, EncodedChunk]]:
        for piece_dir, manifest in pieces:
            for split in SPLITS:
                info = manifest["splits"][split]
                for k in range(info["files"]):
                    tokens = np.load(piece_dir / f"{split}-{k:05d}.npy", allow_pickle=False)
                    lengths = np.load(piece_dir / f"{split}-{k:05d}.lengths.npy", allow_pickle=False)
                    yield split, EncodedChunk(tokens, lengths)
                # counts that are not in the stream itself ride on an empty chunk
                empty = EncodedChunk(np.empty(0, facts.dtype), np.empty(0, np.int64), info["skipped_empty_documents"], info["text_bytes"])
                yield split, empty

    return write_pack(Path(out_dir), chunks(), cfg, facts, fingerprint, started, encoders=[m["encoder"] for _, m in pieces])


def _complete_pieces(pieces_dir: Path, fingerprint: str) -> list[tuple[Path, dict[str, Any]]]:
    """The N pieces in order, each verified against `fingerprint`; UsageError naming what to (re)run otherwise."""
    found = sorted(p for p in pieces_dir.iterdir() if p.is_dir() and _PIECE.match(p.name)) if pieces_dir.is_dir() else []
    counts = {int(_PIECE.match(p.name)[2]) for p in found}
    if not counts:
        raise UsageError(f"no pack pieces in {pieces_dir}; run `selfsup pack --shard i/N` for every i first (or point --pieces at them)")
    if len(counts) > 1:
        raise UsageError(f"{pieces_dir} holds pieces of different splits ({', '.join(f'N={n}' for n in sorted(counts))}); "
                         "remove the stale piece-*-of-* folders and merge again")
    (count,) = counts
    pieces = []
    for index in range(count):
        piece_dir = pieces_dir / piece_name(index, count)
        ok, reason = verify_manifest(piece_dir, fingerprint) if piece_dir.is_dir() else (False, "missing")
        if not ok:
            raise UsageError(f"pack piece {index}/{count} in {pieces_dir} is not usable ({reason}); "
                             f"rerun `selfsup pack --shard {index}/{count}` with the same corpus, tokenizer and settings")
        pieces.append((piece_dir, read_manifest(piece_dir)))
    return pieces


def _fresh_piece_dir(piece_dir: Path) -> Path:
    """Create the piece folder, or empty it of an earlier run's chunks; refuse to clear anything else."""
    piece_dir.mkdir(parents=True, exist_ok=True)
    entries = sorted(piece_dir.iterdir())
    for p in entries:
        if not (p.is_file() and (p.name == MANIFEST or p.name.endswith(".tmp") or _CHUNK.match(p.name))):
            raise UsageError(f"pack piece folder {piece_dir} holds {p.name}, which is not a piece file; choose another --pieces folder")
    (piece_dir / MANIFEST).unlink(missing_ok=True)  # first: a half-cleared piece is never trusted
    for p in entries:
        p.unlink(missing_ok=True)
    return piece_dir
