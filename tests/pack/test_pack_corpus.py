"""Pack stage: documents → EOS-terminated token stream → whole blocks in .npy shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selfsup.config import PackConfig
from selfsup.errors import UsageError
from selfsup.manifest import read_manifest, verify_manifest
from selfsup.pack import pack as pack_module
from selfsup.pack import TokenShards, pack_corpus
from selfsup.pack.pack import ShardWriter
from selfsup.tokens import document_encoder, load_tokenizer

SEQ_LEN = 32
CFG = PackConfig(seq_len=SEQ_LEN, shard_tokens=100, batch_documents=5)  # 3 blocks (96 tokens) per shard


def expected_stream(tokenizer_dir: Path, docs: list[str]) -> np.ndarray:
    """The reference: each document encoded on its own, followed by EOS, in corpus order."""
    tok = load_tokenizer(tokenizer_dir)
    enc = document_encoder(tok)
    ids: list[int] = []
    for doc in docs:
        ids += enc.encode(doc, add_special_tokens=False).ids + [tok.eos_token_id]
    return np.asarray(ids, dtype=np.int64)


def read_split(out: Path, split: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """All shards of a split concatenated, and each shard's document offsets."""
    index = json.loads((out / "index.json").read_text())
    shards = index["splits"][split]["shards"]
    stream = [np.load(out / s["file"], allow_pickle=False) for s in shards]
    docs = [np.load(out / s["docs_file"], allow_pickle=False) for s in shards]
    return (np.concatenate(stream) if stream else np.empty(0, np.int64)), docs


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, tokenizer_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("packed") / "shards"
    pack_corpus(corpus_dir, tokenizer_dir, out, CFG, fingerprint="fp-1")
    return out


def test_blocks_plus_dropped_tail_reproduce_the_documents_exactly(packed: Path, tokenizer_dir: Path, documents) -> None:
    """Concatenated blocks + the dropped tail == the documents' encodings + EOS, in order; tail < one block."""
    index = json.loads((packed / "index.json").read_text())
    for split in ("train", "validation"):
        want = expected_stream(tokenizer_dir, documents[split])
        got, _ = read_split(packed, split)
        info = index["splits"][split]
        assert info["tokens"] == len(got) == info["blocks"] * SEQ_LEN
        assert info["dropped_tail_tokens"] == len(want) - len(got) < SEQ_LEN
        assert np.array_equal(got, want[: len(got)])
        assert info["documents"] == len(documents[split])


def test_every_document_ends_with_eos_and_eos_only_there(tokenizer_dir: Path, documents) -> None:
    """EOS occurs exactly once per document, at its end, even when a document contains "</s>" as text."""
    assert any("</s>" in d for d in documents["train"])
    stream = expected_stream(tokenizer_dir, documents["train"])
    assert (stream == 2).sum() == len(documents["train"]) and stream[-1] == 2


def test_no_padding_tokens(packed: Path) -> None:
    """Blocks are full of text: no <pad> (or other special id besides EOS) appears in any shard."""
    for split in ("train", "validation"):
        stream, _ = read_split(packed, split)
        assert not np.isin(stream, [0, 1, 3, 4]).any()


def test_doc_offsets_point_just_after_eos(packed: Path, tokenizer_dir: Path, documents) -> None:
    """docs.npy lists, per shard, exactly the positions where a document starts (0 or just after EOS)."""
    stream, docs = read_split(packed, "train")
    shard_tokens = [len(np.load(packed / f"train-{k:05d}.npy")) for k in range(len(docs))]
    global_starts = np.concatenate([d + sum(shard_tokens[:k]) for k, d in enumerate(docs)])
    want = np.concatenate([[0], np.flatnonzero(stream == 2) + 1])
    assert np.array_equal(global_starts, want[want < len(stream)])
    for d, n in zip(docs, shard_tokens):
        assert d.dtype == np.int64 and ((d >= 0) & (d < n)).all()


def test_shards_hold_whole_blocks_and_roll_over(packed: Path) -> None:
    """Each shard is shard_tokens rounded down to whole blocks (the last may be shorter), named in sequence."""
    index = json.loads((packed / "index.json").read_text())
    shards = index["splits"]["train"]["shards"]
    assert len(shards) > 3
    for k, s in enumerate(shards):
        arr = np.load(packed / s["file"], allow_pickle=False)
        assert s["file"] == f"train-{k:05d}.npy" and s["docs_file"] == f"train-{k:05d}.docs.npy"
        assert arr.ndim == 1 and arr.dtype == np.uint16 and len(arr) == s["tokens"] == s["blocks"] * SEQ_LEN
        assert s["blocks"] == 3 or k == len(shards) - 1
    assert index["dtype"] == "uint16" and index["seq_len"] == SEQ_LEN and index["eos_id"] == 2 and index["vocab_size"] == 300


def test_shard_tokens_smaller_than_a_block_still_gives_one_block_per_shard(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """shard_tokens below seq_len is rounded up to one block, never to empty shards."""
    pack_corpus(corpus_dir, tokenizer_dir, tmp_path, PackConfig(seq_len=64, shard_tokens=1), "fp")
    index = json.loads((tmp_path / "index.json").read_text())
    assert {s["blocks"] for s in index["splits"]["train"]["shards"]} == {1}


def test_uint32_when_the_vocabulary_exceeds_uint16(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path, packed: Path, monkeypatch) -> None:
    """Above 65536 ids the shards are uint32, holding the same ids as the uint16 packing."""
    monkeypatch.setattr(pack_module, "UINT16_VOCAB_LIMIT", 100)
    pack_corpus(corpus_dir, tokenizer_dir, tmp_path, CFG, "fp")
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["dtype"] == "uint32"
    wide, _ = read_split(tmp_path, "train")
    narrow, _ = read_split(packed, "train")
    assert wide.dtype == np.uint32 and np.array_equal(wide, narrow)


def test_manifest_verifies_and_a_flipped_byte_fails_it(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """The manifest (written last) lists every file; changing one byte of a shard makes it fail."""
    manifest = pack_corpus(corpus_dir, tokenizer_dir, tmp_path, CFG, "fp-9")
    assert verify_manifest(tmp_path, "fp-9") == (True, "verified")
    assert set(manifest["files"]) == {p.name for p in tmp_path.iterdir() if p.name != "manifest.json"}
    assert manifest["seq_len"] == SEQ_LEN and manifest["dtype"] == "uint16" and manifest["mb_per_s"] > 0
    assert 0.9 < manifest["tokens_kept_share"] <= 1.0
    assert manifest["splits"]["train"]["blocks"] == json.loads((tmp_path / "index.json").read_text())["splits"]["train"]["blocks"]
    shard = tmp_path / "train-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    ok, reason = verify_manifest(tmp_path, "fp-9")
    assert not ok and "train-00001.npy" in reason


def test_train_and_validation_are_kept_apart(packed: Path, tokenizer_dir: Path) -> None:
    """Validation documents go only to validation shards; train shards hold no validation text."""
    tok = load_tokenizer(tokenizer_dir)
    train, _ = read_split(packed, "train")
    validation, _ = read_split(packed, "validation")
    assert "validation only:" not in tok.decode(train.tolist())
    assert tok.decode(validation.tolist()).startswith("validation only:")
    assert sorted(p.name for p in packed.glob("validation-*.npy"))[0] == "validation-00000.docs.npy"


def test_too_small_training_corpus_is_a_usage_error(tmp_path: Path, tokenizer_dir: Path, write_corpus) -> None:
    """Fewer training tokens than one block stops with a message saying how many and what to change."""
    corpus = write_corpus(tmp_path / "corpus", ["tiny"], ["also tiny"])
    with pytest.raises(UsageError, match=r"corpus has only \d+ training tokens, fewer than one block of seq_len=32; lower \[pack\] seq_len"):
        pack_corpus(corpus, tokenizer_dir, tmp_path / "out", CFG, "fp")
    assert read_manifest(tmp_path / "out") is None


def test_small_validation_split_records_zero_blocks(tmp_path: Path, tokenizer_dir: Path, write_corpus, documents) -> None:
    """A validation split shorter than a block packs to 0 blocks and no shard; the stage still succeeds."""
    corpus = write_corpus(tmp_path / "corpus", documents["train"], ["tiny"])
    manifest = pack_corpus(corpus, tokenizer_dir, tmp_path / "out", CFG, "fp")
    info = json.loads((tmp_path / "out" / "index.json").read_text())["splits"]["validation"]
    assert info["blocks"] == 0 and info["shards"] == [] and info["documents"] == 1 and info["dropped_tail_tokens"] > 0
    assert not list((tmp_path / "out").glob("validation-*"))
    assert manifest["splits"]["validation"]["blocks"] == 0
    empty = TokenShards(tmp_path / "out", "validation")
    assert len(empty) == 0 and empty.blocks([]).shape == (0, SEQ_LEN) and empty.token_counts().sum() == 0


def test_rerun_clears_stale_shards(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """Repacking into the same directory leaves only the new run's files, and they verify."""
    pack_corpus(corpus_dir, tokenizer_dir, tmp_path, CFG, "fp-a")
    many = len(list(tmp_path.glob("train-*.npy")))
    pack_corpus(corpus_dir, tokenizer_dir, tmp_path, PackConfig(seq_len=SEQ_LEN, shard_tokens=10**6), "fp-b")
    assert len(list(tmp_path.glob("train-*.npy"))) == 2 < many  # one shard + its docs file
    assert verify_manifest(tmp_path, "fp-b")[0]


def test_refuses_to_clear_a_directory_that_is_not_a_pack(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """A foreign file in out_dir stops the stage before anything is deleted."""
    (tmp_path / "train-00000.npy").write_bytes(b"old")
    (tmp_path / "thesis.pdf").write_bytes(b"precious")
    with pytest.raises(UsageError, match="thesis.pdf"):
        pack_corpus(corpus_dir, tokenizer_dir, tmp_path, CFG, "fp")
    assert (tmp_path / "train-00000.npy").exists() and (tmp_path / "thesis.pdf").read_bytes() == b"precious"


def test_writer_flushes_shards_as_they_fill() -> None:
    """Memory stays bounded: after every batch, fewer than one shard of tokens is held back."""
    writer = ShardWriter(Path("/nonexistent"), "train", seq_len=8, shard_tokens=10**9, dtype=np.dtype(np.uint16))
    writer._write_shard = lambda tokens, starts: setattr(writer, "written", writer.written + len(tokens))  # no disk
    writer.capacity = 64
    rng = np.random.default_rng(0)
    for _ in range(200):
        writer.add_documents([list(rng.integers(5, 300, size=rng.integers(0, 50))) for _ in range(4)], eos=2)
        assert writer.total - writer.written < writer.capacity
    assert writer.written > 100 * 64
