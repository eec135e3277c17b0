"""Read packed token shards: random access to fixed-length blocks, memory-mapped, no pickle.

The shards of a split are immutable once their manifest is written, so a training cursor can be
just (seed, epoch, position) over block indices 0..len-1: `TokenShards.blocks(indices)` maps each
global block index to (shard, row) and gathers the rows from memory-mapped .npy files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selfsup.errors import UsageError
from selfsup.pack.pack import INDEX


class TokenShards:
    """One split of a pack directory as an array of blocks, shape (len(self), seq_len)."""

    def __init__(self, shards_dir: Path, split: str = "train") -> None:
        shards_dir = Path(shards_dir)
        try:
            index = json.loads((shards_dir / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"{shards_dir} has no readable {INDEX}; run `selfsup pack` to make token shards there") from None
        if split not in index.get("splits", {}):
            raise UsageError(f"{shards_dir / INDEX} has no split {split!r} (it has: {', '.join(index.get('splits', {}))})")
        self.shards_dir, self.split = shards_dir, split
        self.seq_len: int = index["seq_len"]
        self.vocab_size: int = index["vocab_size"]
        self.eos_id: int = index["eos_id"]
        self.dtype = np.dtype(index["dtype"])
        self._shards = index["splits"][split]["shards"]
        # (blocks, seq_len) views of each memory-mapped shard; nothing is read until indexed
        self._arrays = [self._map(s["file"]).reshape(s["blocks"], self.seq_len) for s in self._shards]
        self._first = np.cumsum([0] + [s["blocks"] for s in self._shards])  # global index of each shard's block 0
        self._docs: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        """Pickle (e.g. to a spawned DataLoader worker) as paths only: the worker maps the files itself."""
        return {"shards_dir": self.shards_dir, "split": self.split}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["shards_dir"], state["split"])

    def _map(self, name: str) -> np.ndarray:
        arr = np.load(self.shards_dir / name, mmap_mode="r", allow_pickle=False)
        if arr.ndim != 1 or arr.dtype != self.dtype or len(arr) % self.seq_len:
            raise UsageError(f"{self.shards_dir / name} is not a 1-D {self.dtype} array of whole blocks; rerun `selfsup pack`")
        return arr

    def __len__(self) -> int:
        return int(self._first[-1])

    @property
    def tokens(self) -> int:
        return len(self) * self.seq_len

    def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global block indices → (shard number, row in shard); IndexError when out of range."""
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"block index out of range 0..{len(self) - 1} for split {self.split!r}")
        shard = np.searchsorted(self._first, indices, side="right") - 1
        return shard, indices - self._first[shard]

    def block(self, i: int) -> np.ndarray:
        """Block i as (seq_len,) in the shard dtype (a read-only view of the memory map)."""
        shard, row = self._locate(np.asarray([i], dtype=np.int64))
        return self._arrays[int(shard[0])][int(row[0])]

    def blocks(self, indices: Sequence[int]) -> np.ndarray:
        """Blocks at `indices` (any order, repeats allowed) as a fresh (B, seq_len) int64 array."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.seq_len), dtype=np.int64)
        shard, row = self._locate(idx)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._arrays[s][row[sel]]  # one fancy-index gather per shard touched
        return out

    def doc_starts(self, i: int) -> np.ndarray:
        """Offsets within block i where a document starts (int64, sorted); a block may start mid-document."""
        shard, row = (int(x[0]) for x in self._locate(np.asarray([i], dtype=np.int64)))
        if shard not in self._docs:
            self._docs[shard] = np.load(self.shards_dir / self._shards[shard]["docs_file"], allow_pickle=False)
        docs = self._docs[shard]
        lo, hi = np.searchsorted(docs, [row * self.seq_len, (row + 1) * self.seq_len])
        return docs[lo:hi] - row * self.seq_len

    def token_counts(self, chunk_tokens: int = 1 << 22) -> np.ndarray:
        """Unigram counts over the split, (vocab_size,) int64, reading chunk_tokens at a time."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for arr in self._arrays:
            flat = arr.reshape(-1)
            for lo in range(0, len(flat), chunk_tokens):
                counts += np.bincount(flat[lo : lo + chunk_tokens], minlength=self.vocab_size)[: self.vocab_size]
        return counts
