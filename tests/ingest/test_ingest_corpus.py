"""The corpus on disk: shard names and schema, streaming reads, manifest, stale output, fingerprint."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfsup.config import CorpusConfig
from selfsup.errors import UsageError
from selfsup.ingest import ingest_sources, iter_texts, read_documents, source_fingerprint
from selfsup.manifest import verify_manifest


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(7):
        (folder / f"doc{i}.txt").write_text(f"Document {i}: the valve log.", encoding="utf-8")
    return folder


def test_shards_columns_and_dtypes(tmp_path, docs):
    """documents/part-NNNNN.parquet shards of shard_documents rows, zstd, five string columns."""
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(shard_documents=3, validation_fraction=0.3))
    parts = sorted(p.name for p in (tmp_path / "corpus" / "documents").glob("part-*.parquet"))
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert manifest["shards"] == 3 and not list((tmp_path / "corpus").glob("part-*.parquet"))
    shard = pq.ParquetFile(tmp_path / "corpus" / "documents" / parts[0])
    assert shard.schema_arrow == pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("split", pa.string()), ("language", pa.string())])
    assert shard.metadata.num_rows == 3
    assert shard.metadata.row_group(0).column(0).compression == "ZSTD"
    rows = list(read_documents(tmp_path / "corpus"))
    assert [r["source"] for r in rows] == [str(docs / f"doc{i}.txt") for i in range(7)]
    assert all(len(r["id"]) == 16 and r["split"] in ("train", "validation") for r in rows)


def test_read_documents_by_split_and_iter_texts(tmp_path, docs):
    """read_documents filters by split and columns; iter_texts yields fixed-size batches in order."""
    ingest_sources([docs], tmp_path / "corpus", CorpusConfig(shard_documents=2, validation_fraction=0.3))
    everything = list(read_documents(tmp_path / "corpus"))
    train = list(read_documents(tmp_path / "corpus", split="train", columns=("text",)))
    validation = list(read_documents(tmp_path / "corpus", split="validation", columns=("id", "text")))
    assert len(train) + len(validation) == 7 and train and validation
    assert set(train[0]) == {"text"} and set(validation[0]) == {"id", "text"}
    assert [d["text"] for d in train] == [d["text"] for d in everything if d["split"] == "train"]
    batches = list(iter_texts(tmp_path / "corpus", batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sum(batches, []) == [d["text"] for d in everything]
    assert sum(iter_texts(tmp_path / "corpus", split="validation"), []) == [d["text"] for d in validation]
    with pytest.raises(ValueError):
        list(read_documents(tmp_path / "corpus", split="test"))
    with pytest.raises(UsageError, match="selfsup ingest"):
        list(iter_texts(tmp_path / "nowhere"))


def test_manifest_verifies_and_matches_the_fingerprint(tmp_path, docs):
    """The manifest verifies, and its fingerprint is what source_fingerprint says for the sources."""
    cfg = CorpusConfig()
    manifest = ingest_sources([docs], tmp_path / "corpus", cfg)
    assert manifest["fingerprint"] == source_fingerprint([docs], cfg)
    assert verify_manifest(tmp_path / "corpus", fingerprint=source_fingerprint([docs], cfg)) == (True, "verified")
    on_disk = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert {"documents/part-00000.parquet", "audit.jsonl"} <= set(on_disk["files"])
    assert on_disk["sources"] == [str(docs)] and on_disk["documents"] == 7


def test_second_ingest_removes_stale_output(tmp_path, docs):
    """Re-ingesting fewer documents into the same folder leaves no old shard behind."""
    ingest_sources([docs], tmp_path / "corpus", CorpusConfig(shard_documents=2))
    assert (tmp_path / "corpus" / "documents" / "part-00003.parquet").exists()
    (tmp_path / "corpus" / "leftover.tmp").write_text("half-written")
    for i in range(3, 7):
        (docs / f"doc{i}.txt").unlink()
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(shard_documents=2))
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["audit.jsonl", "documents", "extracted", "manifest.json"]
    assert sorted(p.name for p in (tmp_path / "corpus" / "documents").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert sorted(p.name for p in (tmp_path / "corpus" / "extracted").iterdir()) == [
        "shard-00000-of-00001.json", "shard-00000-of-00001.parquet",
    ]  # fmt: skip
    assert manifest["documents"] == len(list(read_documents(tmp_path / "corpus"))) == 3
    assert verify_manifest(tmp_path / "corpus")[0]


def test_fingerprint_follows_files_and_settings_only(docs):
    """The fingerprint changes with a file's size or mtime, a new file, or a setting; not otherwise."""
    cfg = CorpusConfig()
    base = source_fingerprint([docs], cfg)
    assert source_fingerprint([docs], cfg) == base
    assert source_fingerprint([docs], CorpusConfig(sources=[docs / "elsewhere"])) == base  # the argument counts
    assert source_fingerprint([docs], CorpusConfig(min_chars=5)) != base
    assert source_fingerprint([docs], CorpusConfig(validation_fraction=0.2)) != base

    st = os.stat(docs / "doc0.txt")
    os.utime(docs / "doc0.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    touched = source_fingerprint([docs], cfg)
    assert touched != base
    with open(docs / "doc0.txt", "a", encoding="utf-8") as fh:
        fh.write("!")
    os.utime(docs / "doc0.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same mtime, new size
    assert source_fingerprint([docs], cfg) not in (base, touched)
    grown = source_fingerprint([docs], cfg)
    (docs / "new.md").write_text("new", encoding="utf-8")
    assert source_fingerprint([docs], cfg) != grown


def test_pandas_pyarrow_and_datasets_read_the_documents_with_one_call(tmp_path, docs):
    """corpus/documents is the documents alone: pandas, pyarrow and HF datasets each read it whole with
    one standard call and get exactly what selfsup reads, while the audit, manifest and extraction
    cache (Parquet of another schema) stay beside it in corpus/."""
    import pandas as pd

    datasets = pytest.importorskip("datasets")
    ingest_sources([docs], tmp_path / "corpus", CorpusConfig(shard_documents=3, validation_fraction=0.3))
    folder = tmp_path / "corpus" / "documents"
    ours = sorted((d["id"], d["text"], d["split"]) for d in read_documents(tmp_path / "corpus"))
    frame = pd.read_parquet(folder)
    assert sorted(zip(frame["id"], frame["text"], frame["split"])) == ours
    table = pq.read_table(folder)
    assert sorted(zip(*(table.column(c).to_pylist() for c in ("id", "text", "split")))) == ours
    loaded = datasets.load_dataset("parquet", data_dir=str(folder), split="train", cache_dir=str(tmp_path / "hf"))
    assert sorted(zip(loaded["id"], loaded["text"], loaded["split"])) == ours
    assert {p.name for p in (tmp_path / "corpus").iterdir()} >= {"audit.jsonl", "manifest.json", "extracted"}
