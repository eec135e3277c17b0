"""`selfsup pack --shard i/N` + `--merge`: the merged shards are byte for byte those of a single run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfsup.cli import app
from selfsup.config import PackConfig
from selfsup.errors import UsageError
from selfsup.manifest import read_manifest
from selfsup.pack import merge_pieces, pack_corpus, pack_piece, parse_shard
from selfsup.pack.reader import corpus_rows, iter_documents, read_ahead, slice_rows

CFG = PackConfig(seq_len=32, shard_tokens=100, batch_documents=4)  # many shards; pieces cut mid-shard
TIMING = {"created", "seconds", "mb_per_s"}  # the only manifest fields allowed to differ


def same_directory(a: Path, b: Path) -> None:
    """Every file identical byte for byte, except the manifest, whose figures (not timings) must match."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name != "manifest.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    figures = [{k: v for k, v in read_manifest(d).items() if k not in TIMING} for d in (a, b)]
    assert figures[0] == figures[1]


def test_three_pieces_merged_equal_a_single_run(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path, documents) -> None:
    """3 pieces + merge == one `pack` run: same shards, doc offsets, index.json and manifest figures."""
    single = tmp_path / "single"
    pack_corpus(corpus_dir, tokenizer_dir, single, CFG, "fp")
    for i in (2, 0, 1):  # any order: array jobs finish when they finish
        pack_piece(corpus_dir, tokenizer_dir, tmp_path / "pieces", CFG, "fp", i, 3)
    merged = tmp_path / "merged"
    merge_pieces(tmp_path / "pieces", merged, CFG, "fp")
    same_directory(single, merged)
    index = json.loads((merged / "index.json").read_text())
    assert len(index["splits"]["train"]["shards"]) > 3 and index["splits"]["validation"]["blocks"] > 0
    assert index["splits"]["train"]["documents"] == len(documents["train"])


def test_more_pieces_than_row_groups_and_empty_pieces(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """With more pieces than some parts have rows (some slices hold only validation, or nothing), the merge still equals."""
    single = tmp_path / "single"
    pack_corpus(corpus_dir, tokenizer_dir, single, CFG, "fp")
    count = 30  # the corpus has 22 documents: 8 pieces are empty
    for i in range(count):
        pack_piece(corpus_dir, tokenizer_dir, tmp_path / "pieces", CFG, "fp", i, count)
    merge_pieces(tmp_path / "pieces", tmp_path / "merged", CFG, "fp")
    same_directory(single, tmp_path / "merged")


def test_slices_cover_every_row_once_in_order(corpus_dir: Path, documents) -> None:
    """The N slices partition the corpus rows: concatenated, they are each split's texts in corpus order."""
    rows = corpus_rows(corpus_dir)
    assert rows == len(documents["train"]) + len(documents["validation"])
    for count in (1, 2, 5, rows + 3):
        read = [(t, s) for i in range(count) for texts, splits in iter_documents(corpus_dir, slice_rows(rows, i, count), 3)
                for t, s in zip(texts, splits, strict=True)]
        for split in ("train", "validation"):
            assert [t for t, s in read if s == split] == documents[split]


def test_read_ahead_keeps_order_and_raises_the_producers_error() -> None:
    """The background reader yields items in order and re-raises its failure in the consumer."""
    assert list(read_ahead(iter(range(100)), depth=2)) == list(range(100))

    def broken():
        yield 1
        raise OSError("part-00003.parquet is truncated")

    with pytest.raises(OSError, match="truncated"):
        list(read_ahead(broken()))


def test_merge_names_a_missing_or_stale_piece(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """A missing piece, or one made with other settings, stops the merge with the command to rerun it."""
    pieces = tmp_path / "pieces"
    pack_piece(corpus_dir, tokenizer_dir, pieces, CFG, "fp", 0, 2)
    with pytest.raises(UsageError, match=r"piece 1/2 .*missing.*rerun `selfsup pack --shard 1/2`"):
        merge_pieces(pieces, tmp_path / "out", CFG, "fp")
    pack_piece(corpus_dir, tokenizer_dir, pieces, CFG, "other-settings", 1, 2)
    with pytest.raises(UsageError, match=r"piece 1/2 .*settings or inputs changed"):
        merge_pieces(pieces, tmp_path / "out", CFG, "fp")
    pack_piece(corpus_dir, tokenizer_dir, pieces, CFG, "fp", 0, 3)
    with pytest.raises(UsageError, match=r"pieces of different splits \(N=2, N=3\)"):
        merge_pieces(pieces, tmp_path / "out", CFG, "fp")
    with pytest.raises(UsageError, match="no pack pieces in"):
        merge_pieces(tmp_path / "nowhere", tmp_path / "out", CFG, "fp")


@pytest.mark.parametrize("text", ["3", "3/3", "-1/3", "a/b", "1/0", ""])
def test_bad_shard_flag_is_a_usage_error(text: str) -> None:
    """--shard must be i/N with 0 <= i < N; anything else names the flag and shows the form."""
    with pytest.raises(UsageError, match=r"--shard .* is not i/N"):
        parse_shard(text)
    assert parse_shard(" 2 / 4 ") == (2, 4)


def test_cli_shard_and_merge(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """The commands a Slurm array runs: `pack --shard i/N` per task, then one `pack --merge`; equal to `pack`."""
    runner = CliRunner()
    common = [str(corpus_dir), "--tokenizer", str(tokenizer_dir), "--seq-len", "32"]
    assert runner.invoke(app, ["pack", *common, "--out", str(tmp_path / "single")]).exit_code == 0
    for i in range(2):
        result = runner.invoke(app, ["pack", *common, "--out", str(tmp_path / "merged"), "--shard", f"{i}/2"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "merged-pieces" / "piece-00001-of-00002" / "manifest.json").exists()
    result = runner.invoke(app, ["pack", *common, "--out", str(tmp_path / "merged"), "--merge"])
    assert result.exit_code == 0, result.output
    same_directory(tmp_path / "single", tmp_path / "merged")
    both = runner.invoke(app, ["pack", *common, "--shard", "0/2", "--merge"])
    assert isinstance(both.exception, UsageError) and "--shard and --merge" in str(both.exception)


def test_cli_bad_shard_is_one_line_and_exit_2(tmp_path: Path, corpus_dir: Path, tokenizer_dir: Path) -> None:
    """`selfsup pack --shard 4/4` exits 2 with one line saying the form, no traceback."""
    out = subprocess.run([sys.executable, "-m", "selfsup", "pack", str(corpus_dir), "--tokenizer", str(tokenizer_dir),
                          "--out", str(tmp_path / "s"), "--shard", "4/4"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "is not i/N with 0 <= i < N" in " ".join((out.stdout + out.stderr).split())
