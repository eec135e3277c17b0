"""TokenShards: random access to packed blocks, equal to the raw token stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selfsup.config import PackConfig
from selfsup.errors import UsageError
from selfsup.pack import TokenShards, pack_corpus

SEQ_LEN = 16


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, tokenizer_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("shards")
    pack_corpus(corpus_dir, tokenizer_dir, out, PackConfig(seq_len=SEQ_LEN, shard_tokens=50), "fp")  # 3 blocks a shard
    return out


def raw_stream(out: Path, split: str) -> np.ndarray:
    index = json.loads((out / "index.json").read_text())
    return np.concatenate([np.load(out / s["file"]) for s in index["splits"][split]["shards"]]).astype(np.int64)


def test_blocks_match_the_raw_stream(packed: Path) -> None:
    """blocks(indices) returns row i of the stream cut into seq_len rows, any order, repeats, across shards."""
    shards = TokenShards(packed, "train")
    rows = raw_stream(packed, "train").reshape(-1, SEQ_LEN)
    assert len(shards) == len(rows) and shards.seq_len == SEQ_LEN and shards.tokens == rows.size
    idx = np.random.default_rng(0).integers(0, len(shards), size=64).tolist() + [0, len(shards) - 1, 0]
    got = shards.blocks(idx)
    assert got.dtype == np.int64 and got.shape == (len(idx), SEQ_LEN)
    assert np.array_equal(got, rows[idx])
    assert np.array_equal(shards.blocks(range(len(shards))), rows)
    for i in (0, 2, 3, len(shards) - 1):  # 2 | 3 is a shard boundary
        assert np.array_equal(shards.block(i), rows[i])
    assert shards.blocks([]).shape == (0, SEQ_LEN)


def test_out_of_range_index_raises(packed: Path) -> None:
    """An index past either end is an IndexError, not a silently wrapped block."""
    shards = TokenShards(packed)
    with pytest.raises(IndexError):
        shards.block(len(shards))
    with pytest.raises(IndexError):
        shards.blocks([0, -1])


def test_token_counts_are_unigram_counts_of_the_split(packed: Path) -> None:
    """token_counts() == bincount of the split's tokens, whatever the chunk size."""
    shards = TokenShards(packed, "train")
    want = np.bincount(raw_stream(packed, "train"), minlength=shards.vocab_size)
    for chunk in (7, 1 << 22):
        counts = shards.token_counts(chunk_tokens=chunk)
        assert counts.dtype == np.int64 and counts.shape == (shards.vocab_size,)
        assert np.array_equal(counts, want)


def test_doc_starts_within_a_block(packed: Path) -> None:
    """doc_starts(i) are the offsets in block i that start a document: 0 for block 0, else just after EOS."""
    shards = TokenShards(packed, "train")
    stream = raw_stream(packed, "train")
    starts = np.concatenate([[0], np.flatnonzero(stream == shards.eos_id) + 1])
    for i in range(len(shards)):
        lo = i * SEQ_LEN
        want = starts[(starts >= lo) & (starts < lo + SEQ_LEN)] - lo
        assert np.array_equal(shards.doc_starts(i), want)


def test_validation_split_is_separate(packed: Path) -> None:
    """The validation split reads its own shards; eos and vocabulary facts come from the index."""
    train, validation = TokenShards(packed, "train"), TokenShards(packed, "validation")
    assert len(validation) > 0 and validation.eos_id == train.eos_id == 2 and validation.vocab_size == 300
    assert np.array_equal(validation.blocks(range(len(validation))).reshape(-1), raw_stream(packed, "validation"))


def test_missing_index_or_split_is_a_usage_error(tmp_path: Path, packed: Path) -> None:
    """A directory that was never packed, or a split that is not in it, says what to do."""
    with pytest.raises(UsageError, match="selfsup pack"):
        TokenShards(tmp_path)
    with pytest.raises(UsageError, match="'test'"):
        TokenShards(packed, "test")


def test_memory_maps_instead_of_reading(packed: Path) -> None:
    """Shards are memory-mapped (np.memmap), so opening a split costs no reads of its tokens."""
    shards = TokenShards(packed)
    assert isinstance(shards.block(0).base, np.memmap) or isinstance(shards.block(0), np.memmap)
    assert not shards.block(0).flags.writeable


def test_pickles_as_paths_not_data(packed: Path) -> None:
    """Sending TokenShards to a worker process re-maps the files instead of copying every token."""
    import pickle

    shards = TokenShards(packed, "validation")
    blob = pickle.dumps(shards)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    assert len(again) == len(shards) and np.array_equal(again.blocks([0]), shards.blocks([0]))
