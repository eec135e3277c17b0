"""Incremental re-runs: only new and changed files are extracted, and the corpus equals a fresh run's."""

import json

import pytest

from selfsup.config import CorpusConfig
from selfsup.ingest import ingest_sources
from selfsup.manifest import verify_manifest
from tests.ingest.make_files import corpus_snapshot, mixed_folder


def test_rerun_on_a_changed_folder_equals_a_fresh_run(tmp_path):
    """Grown, changed, renamed and deleted files: the re-run extracts only the 3 new or changed
    files (the renamed one is found by its content), drops the deleted file's documents, redoes
    de-duplication (a copy whose original was deleted is kept now) and ends with the same shards,
    audit and counts as a fresh run on the changed folder."""
    cfg = CorpusConfig(workers=0, shard_documents=5, validation_fraction=0.2)
    docs = mixed_folder(tmp_path)
    first = ingest_sources([docs], tmp_path / "corpus", cfg)
    read = sum(c["files"] for c in first["formats"].values())
    assert first["files_extracted"] == read == 17 and first["files_reused"] == 0
    assert (first["duplicates"], first["near_duplicates"], first["audit"]["duplicate"]) == (1, 1, 2)

    mixed_folder(tmp_path, variant=1)
    again = ingest_sources([docs], tmp_path / "corpus", cfg)
    assert (again["files_extracted"], again["files_reused"]) == (3, 15)  # new_a, new_b, topic05 changed
    assert (again["duplicates"], again["near_duplicates"], again["audit"]["duplicate"]) == (0, 1, 1)
    assert verify_manifest(tmp_path / "corpus")[0]

    fresh = ingest_sources([docs], tmp_path / "fresh", cfg)
    assert fresh["files_extracted"] == 18 and fresh["fingerprint"] == again["fingerprint"]
    assert corpus_snapshot(tmp_path / "corpus") == corpus_snapshot(tmp_path / "fresh")
    lines = [json.loads(line) for line in (tmp_path / "corpus" / "audit.jsonl").read_text().splitlines()]
    assert {line["path"].removeprefix(f"{docs}/"): line["status"] for line in lines}["sub/copy_of_topic03.txt"] == "ingested"


def test_unchanged_rerun_extracts_nothing_and_fresh_extracts_all(tmp_path):
    """A re-run on the same folder reuses every file; a merge-only setting (the split) re-merges
    without extracting; `reuse=False` extracts everything again, with the same corpus."""
    docs = mixed_folder(tmp_path)
    cfg = CorpusConfig(workers=0)
    ingest_sources([docs], tmp_path / "corpus", cfg)
    before = corpus_snapshot(tmp_path / "corpus")
    same = ingest_sources([docs], tmp_path / "corpus", cfg)
    assert same["files_extracted"] == 0 and same["files_reused"] == 17
    assert corpus_snapshot(tmp_path / "corpus") == before
    resplit = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(workers=0, validation_fraction=0.5))
    assert resplit["files_extracted"] == 0 and resplit["validation_documents"] > same["validation_documents"]
    redo = ingest_sources([docs], tmp_path / "corpus", cfg, reuse=False)
    assert redo["files_extracted"] == 17 and corpus_snapshot(tmp_path / "corpus") == before


def test_a_setting_that_changes_extraction_reextracts(tmp_path):
    """Earlier results made under other extraction settings (here: PII off) are not reused."""
    docs = mixed_folder(tmp_path)
    ingest_sources([docs], tmp_path / "corpus", CorpusConfig(workers=0))
    other = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(workers=0, pii=False))
    assert other["files_extracted"] == 17 and other["files_reused"] == 0


@pytest.mark.slow
def test_rerun_with_sandboxed_workers_equals_fresh(tmp_path):
    """The same with the real sandbox (2 workers): results come back in walk order either way."""
    cfg = CorpusConfig(workers=2, shard_documents=4)
    docs = mixed_folder(tmp_path)
    ingest_sources([docs], tmp_path / "corpus", cfg)
    mixed_folder(tmp_path, variant=1)
    again = ingest_sources([docs], tmp_path / "corpus", cfg)
    assert again["files_extracted"] == 3
    ingest_sources([docs], tmp_path / "fresh", CorpusConfig(workers=0, shard_documents=4))
    assert corpus_snapshot(tmp_path / "corpus") == corpus_snapshot(tmp_path / "fresh")
