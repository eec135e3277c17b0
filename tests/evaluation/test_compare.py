"""The pieces of `selfsup compare`: the same bytes for every model, held-out sets checked before
anything is scored, model identity by content, and the decision in words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selfsup.config import Recipe
from selfsup.errors import UsageError
from selfsup.evaluation.compare import CompareRun, common_heldout, cut_to_bytes, heldout_documents
from selfsup.ingest import ingest_sources
from selfsup.models.identity import model_fingerprint
from selfsup.report.compare import decide
from tests.conftest import small_recipe, write_reference_docs


def test_cut_to_bytes_keeps_whole_texts_and_cuts_the_last_at_a_character():
    texts = ["aaaa", "ééé", "zzzz"]  # "ééé" is 6 bytes
    assert cut_to_bytes(texts, 100) == texts
    assert cut_to_bytes(texts, 7) == ["aaaa", "é"]  # 3 bytes of room: one whole "é", never half of one
    assert sum(len(t.encode()) for t in cut_to_bytes(texts, 9)) <= 9


def _run(workdir: Path) -> CompareRun:
    return CompareRun(workdir=workdir, name=workdir.name, recipe=Recipe(), run={}, lineage={}, rebase=None,
                      adapted_dir=None, base_dir=None)


def test_runs_over_different_heldout_documents_are_refused_unless_compared_on_the_common_ones(tmp_path: Path):
    """Two corpora that overlap: compare names the difference and refuses; --common compares on the
    documents both hold out, and says so. The split is decided by the document id, so a shared
    document is held out in both."""
    docs = write_reference_docs(tmp_path / "all", n=80)
    names = sorted(p.name for p in docs.iterdir())
    for run, picked in (("a", names[:70]), ("b", names[10:])):
        folder = tmp_path / f"docs-{run}" / "docs"
        folder.mkdir(parents=True)
        for name in picked:
            shutil.copy(docs / name, folder / name)
        cfg = small_recipe([folder]).corpus
        cfg.validation_fraction = 0.3
        ingest_sources([folder], tmp_path / run / "corpus", cfg)
    runs = [_run(tmp_path / "a"), _run(tmp_path / "b")]
    with pytest.raises(UsageError, match=r"not evaluated on the same held-out documents: a has \d+, b has \d+, \d+ in common; "
                                         r"e\.g\. .* is held out only in a.*--common"):
        common_heldout(runs, common=False)
    texts, info = common_heldout(runs, common=True)
    in_a = {t for _, t, _ in heldout_documents(tmp_path / "a")}
    in_b = {t for _, t, _ in heldout_documents(tmp_path / "b")}
    assert set(texts) == in_a & in_b and 0 < len(texts) < len(in_a)
    assert info["common_only"] and "held-out documents all runs share" in info["note"]
    same, info = common_heldout([runs[0], _run(tmp_path / "a")], common=False)
    assert info["identical"] and not info["common_only"] and len(same) == len(in_a)


def test_a_model_is_known_by_its_files_not_its_folder(tmp_path: Path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"model_type": "llama"}')
    (a / "model.safetensors").write_bytes(b"weights")
    (a / "manifest.json").write_text('{"fingerprint": "x"}')  # bookkeeping, not the model
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    (b / "manifest.json").write_text('{"fingerprint": "y"}')
    assert model_fingerprint(a) == model_fingerprint(b)
    (b / "model.safetensors").write_bytes(b"weightz")
    assert model_fingerprint(a) != model_fingerprint(b)


def test_the_decision_answers_the_rebase_question_with_the_figures():
    square = {"old_run": "old", "new_run": "new", "new_forgetting": 0.004,
              "old_base": {"domain": 0.95}, "old_adapted": {"domain": 0.94},
              "new_base": {"domain": 0.91}, "new_adapted": {"domain": 0.82}}
    rows = [{"name": "new (adapted)", "scores": {"heldout": {"bits_per_byte": 0.82}}},
            {"name": "old (adapted)", "scores": {"heldout": {"bits_per_byte": 0.94}}}]
    changes = [{"run": "old", "domain": -0.01, "forgetting": 0.0}, {"run": "lora", "domain": -0.05, "forgetting": 0.031}]
    said = decide(rows, changes, square)
    assert said[0] == "New base alone: 0.910 bits/byte on your held-out documents, better than your adapted old model (0.940)."
    assert said[1].startswith("Re-adapting the new base: 0.820 (−9.9%), better than the adapted old model") and "+0.4%" in said[1]
    assert said[2].startswith("lora: adapted −5.0% bits/byte") and "more forgetting than the 2%" in said[2]
    assert said[-1] == "Best on your held-out documents: new (adapted) (0.820 bits/byte)."
