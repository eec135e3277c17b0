"""Pairs stage: corpus + tokenizer → (query, positive, hard negative) rows for contrastive training.

Runs for `contrastive` with `[objective] positives = "structure"`. The training documents'
structure gives the pairs (structure.py: heading → section, first sentence → rest, inverse cloze);
BM25 over all mined passages gives each query a hard negative: the best-scoring passage of
*another* document (same-document passages may well answer the query too). Every row is three
token sequences of `passage_tokens`, each as the tokenizer encodes a sentence for its model
(special tokens included: `[CLS] … [SEP]` for a BERT encoder, as sentence-transformers does),
padded with the pad id:

    train.npy        (pairs, 3 × passage_tokens) uint16/uint32: query | positive | negative
    validation.npy   the same from the validation documents (validation loss only)
    pairs.json       counts per kind, how many negatives BM25 found, examples of each kind
    manifest.json    sha256 of every file, written last

The train loop reads rows through `PairRows`, which looks like packed shards to it (`len`,
`blocks(rows)`, `seq_len`), so data order, resume and distribution stay the loop's own.
"""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from selfsup.errors import UsageError
from selfsup.ingest.corpus import read_documents
from selfsup.manifest import write_json_atomic, write_manifest
from selfsup.pack.pack import token_dtype
from selfsup.pairs.bm25 import BM25
from selfsup.pairs.structure import Pair, Passage, mine_documents
from selfsup.tokens.load import load_tokenizer, special_ids

PAIRS_JSON = "pairs.json"
MAX_TRAIN_DOCUMENTS = 200_000  # mined per run: far more pairs than a CPU budget trains on
EXAMPLES_PER_KIND = 3


def uses_pairs(recipe) -> bool:
    return "contrastive" in recipe.objective.names and recipe.objective.positives == "structure"


def pairs_dir(shards_dir: Path) -> Path:
    """Where a run's mined pairs live: `pairs/` beside the shards."""
    return Path(shards_dir).parent / "pairs"


def build_pairs(corpus_dir: Path, tokenizer_dir: Path, out_dir: Path, *, passage_tokens: int, seed: int,
                fingerprint: str, title_share: float | None = None) -> dict[str, Any]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(tokenizer_dir)
    pad = special_ids(tokenizer)["pad"]  # eos where the tokenizer has no pad, as the contrastive objective reads it
    summary: dict[str, Any] = {"passage_tokens": passage_tokens, "negatives": "bm25, best passage of another document"}
    for split in ("train", "validation"):
        texts = [d["text"] for d in islice(read_documents(corpus_dir, split=split, columns=("text",)), MAX_TRAIN_DOCUMENTS)]
        passages, pairs = mine_documents(texts, seed)
        if split == "train" and title_share:
            pairs = with_title_share(pairs, title_share)
        if split == "train" and len(pairs) < 2:
            raise UsageError(f"found {len(pairs)} (query, passage) pairs in the training documents of {corpus_dir}: too "
                             "few for contrastive training; add documents, or set [objective] positives = \"neighbours\"")
        negatives, mined = hard_negatives(passages, pairs, seed)
        rows = encode_rows(tokenizer, pairs, [passages[i].text for i in negatives], passage_tokens, pad)
        np.save(out_dir / f"{split}.npy", rows.astype(token_dtype(len(tokenizer))), allow_pickle=False)
        summary[split] = {"documents": len(texts), "passages": len(passages), "pairs": len(pairs),
                          "kinds": _count_kinds(pairs), "bm25_negatives": mined}
        if split == "train":
            summary["examples"] = _examples(pairs, passages, negatives)
    write_json_atomic(out_dir / PAIRS_JSON, summary)
    return write_manifest(out_dir, stage="pairs", fingerprint=fingerprint, extra={"pairs": summary["train"]["pairs"]})


def with_title_share(pairs: list[Pair], share: float) -> list[Pair]:
    """The pairs, with the heading → section pairs repeated until they are about `share` of them:
    manuals have few headings beside many sentences, and headings are what people type."""
    titles = [p for p in pairs if p.kind == "title"]
    others = len(pairs) - len(titles)
    if not titles or len(titles) >= share * len(pairs):
        return pairs
    wanted = round(share * others / (1 - share))  # titles / (titles + others) = share
    return pairs + [titles[i % len(titles)] for i in range(wanted - len(titles))]


def hard_negatives(passages: list[Passage], pairs: list[Pair], seed: int, batch: int = 2048) -> tuple[list[int], int]:
    """Per pair, the passage of another document BM25 ranks highest for its query (a random
    passage of another document where no word is shared); and how many BM25 found."""
    rng = random.Random(seed)
    docs = np.array([p.doc for p in passages])
    index = BM25([p.text for p in passages])
    chosen, mined = [], 0
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        scores = index.sparse_scores([p.query for p in chunk])
        for row, pair in enumerate(chunk):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            cols, vals = scores.indices[lo:hi], scores.data[lo:hi]
            keep = docs[cols] != pair.doc
            if keep.any():
                chosen.append(int(cols[keep][np.argmax(vals[keep])]))
                mined += 1
            else:
                chosen.append(_other_document_passage(docs, pair.doc, rng))
    return chosen, mined


def _other_document_passage(docs: np.ndarray, doc: int, rng: random.Random) -> int:
    others = np.flatnonzero(docs != doc)
    return int(others[rng.randrange(len(others))]) if len(others) else int(rng.randrange(len(docs)))


def encode_texts(tokenizer, texts: list[str], width: int) -> list[list[int]]:
    """Each text as its model encodes a sentence (special tokens included), cut to `width` tokens."""
    return tokenizer(texts, truncation=True, max_length=width, add_special_tokens=True)["input_ids"] if texts else []


def encode_rows(tokenizer, pairs: list[Pair], negatives: list[str], width: int, pad: int) -> np.ndarray:
    """(pairs, 3 × width) ids: query | positive | negative, each truncated to `width` and padded."""
    rows = np.full((len(pairs), 3, width), pad, dtype=np.int64)
    for col, texts in enumerate(([p.query for p in pairs], [p.positive for p in pairs], negatives)):
        for i, ids in enumerate(encode_texts(tokenizer, texts, width)):
            rows[i, col, : len(ids)] = ids
    return rows.reshape(len(pairs), 3 * width)


def _count_kinds(pairs: list[Pair]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in pairs:
        out[p.kind] = out.get(p.kind, 0) + 1
    return out


def _examples(pairs: list[Pair], passages: list[Passage], negatives: list[int]) -> list[dict[str, str]]:
    out, seen = [], {}
    for pair, neg in zip(pairs, negatives):
        if seen.get(pair.kind, 0) < EXAMPLES_PER_KIND:
            seen[pair.kind] = seen.get(pair.kind, 0) + 1
            out.append({"kind": pair.kind, "query": pair.query, "positive": pair.positive[:400],
                        "negative": passages[neg].text[:400]})
    return out


class PairRows:
    """One split of a pairs directory as the train loop reads data: `len`, `blocks(rows)`, `seq_len`."""

    def __init__(self, directory: Path, split: str = "train") -> None:
        self.directory, self.split = Path(directory), split
        path = self.directory / f"{split}.npy"
        try:
            self._rows = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            raise UsageError(f"{path} is missing or unreadable; mine the pairs with `selfsup pairs CORPUS --tokenizer "
                             f"TOKENIZER --out {self.directory}` (beside the shards), or run `selfsup run`") from None
        self.seq_len: int = self._rows.shape[1]
        self.vocab_size: int = 0  # the tokenizer's size decides the model's rows

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def __getstate__(self) -> dict:
        return {"directory": self.directory, "split": self.split}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"], state["split"])

    def blocks(self, rows) -> np.ndarray:
        return np.asarray(self._rows[np.asarray(rows)], dtype=np.int64)
