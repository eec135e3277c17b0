"""The train/validation split: fixed per document id, close to the fraction, never one-sided."""

import json

from selfsup.config import CorpusConfig
from selfsup.dedup import document_id
from selfsup.ingest import ingest_sources, read_documents
from selfsup.ingest.split import bucket, split_of


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")


def splits(corpus):
    return {d["id"]: d["split"] for d in read_documents(corpus, columns=("id", "split"))}


def test_adding_documents_never_moves_old_ones(tmp_path):
    """Re-ingesting with more documents keeps every old document on its side of the split."""
    docs = tmp_path / "docs"
    docs.mkdir()
    cfg = CorpusConfig(validation_fraction=0.1)
    write_jsonl(docs / "a.jsonl", [f"maintenance note number {i}" for i in range(300)])
    ingest_sources([docs], tmp_path / "corpus", cfg)
    before = splits(tmp_path / "corpus")
    write_jsonl(docs / "b.jsonl", [f"incident report number {i}" for i in range(300)])
    ingest_sources([docs], tmp_path / "corpus", cfg)
    after = splits(tmp_path / "corpus")
    assert len(after) == 600
    assert {i: after[i] for i in before} == before
    assert "validation" in before.values()


def test_validation_share_is_close_to_the_fraction(tmp_path):
    """On 2,000 small documents the validation share is within a few points of the fraction."""
    docs = tmp_path / "docs"
    docs.mkdir()
    write_jsonl(docs / "many.jsonl", [f"document {i}: pressure reading {i * 7 % 13}" for i in range(2000)])
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(validation_fraction=0.1))
    assert manifest["documents"] == 2000
    assert 150 <= manifest["validation_documents"] <= 250
    assert list(splits(tmp_path / "corpus").values()).count("validation") == manifest["validation_documents"]


def texts_with_rule_split(want: str, fraction: float, n: int) -> list[str]:
    """n texts that the hash rule alone puts in `want`."""
    found, i = [], 0
    while len(found) < n:
        text = f"short note {i}"
        if split_of(document_id(text), fraction) == want:
            found.append(text)
        i += 1
    return found


def test_small_corpus_gets_one_validation_document(tmp_path):
    """If the rule puts no document in validation, the one with the smallest bucket moves there."""
    docs = tmp_path / "docs"
    docs.mkdir()
    texts = texts_with_rule_split("train", 0.05, 3)
    write_jsonl(docs / "a.jsonl", texts)
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(validation_fraction=0.05, shard_documents=1))
    assert (manifest["train_documents"], manifest["validation_documents"]) == (2, 1)
    lowest = min((bucket(document_id(t)), document_id(t)) for t in texts)[1]
    assert [i for i, s in splits(tmp_path / "corpus").items() if s == "validation"] == [lowest]


def test_small_corpus_keeps_one_train_document(tmp_path):
    """If the rule puts every document in validation, the one with the largest bucket moves to train."""
    docs = tmp_path / "docs"
    docs.mkdir()
    texts = texts_with_rule_split("validation", 0.9, 2)
    write_jsonl(docs / "a.jsonl", texts)
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(validation_fraction=0.9))
    assert (manifest["train_documents"], manifest["validation_documents"]) == (1, 1)
    highest = max((bucket(document_id(t)), document_id(t)) for t in texts)[1]
    assert [i for i, s in splits(tmp_path / "corpus").items() if s == "train"] == [highest]


def test_single_document_is_train_and_zero_fraction_is_all_train(tmp_path):
    """One document always trains; with validation_fraction 0 nothing is held out."""
    docs = tmp_path / "docs"
    docs.mkdir()
    write_jsonl(docs / "a.jsonl", texts_with_rule_split("validation", 0.5, 1))
    assert ingest_sources([docs], tmp_path / "c1", CorpusConfig(validation_fraction=0.5))["train_documents"] == 1
    write_jsonl(docs / "a.jsonl", [f"note {i}" for i in range(50)])
    manifest = ingest_sources([docs], tmp_path / "c2", CorpusConfig(validation_fraction=0.0))
    assert (manifest["train_documents"], manifest["validation_documents"]) == (50, 0)
