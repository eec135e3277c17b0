"""Whole stories: a folder in, a trained model, eval, report and an HF export out; reruns skip."""

import json

import pytest

from selfsup.pipeline import run_pipeline
from tests.conftest import small_recipe, write_reference_docs

pytestmark = pytest.mark.slow


def test_folder_to_model_then_rerun_skips_and_changes_rerun_downstream(tmp_path):
    """run → every stage runs and leaves its artefact; the same run again skips every stage;
    a changed [train] setting reruns train and what follows, not ingest/tokenizer/pack."""
    docs = write_reference_docs(tmp_path / "docs", n=60)
    (tmp_path / "docs" / "empty.txt").write_text("   \n")
    (tmp_path / "docs" / "copy.txt").write_text((tmp_path / "docs" / sorted(p.name for p in docs.iterdir())[0]).read_text())
    recipe = small_recipe([docs], max_steps=8)
    work = tmp_path / "work"

    first = run_pipeline(recipe, work)
    assert set(first["status"].values()) == {"ran"} and len(first["status"]) == 7
    for rel in ("corpus/manifest.json", "corpus/audit.jsonl", "tokenizer/tokenizer.json", "shards/index.json",
                "run/metrics.jsonl", "model/model.safetensors", "eval.json", "report.html"):
        assert (work / rel).exists(), rel
    audit = [json.loads(x) for x in (work / "corpus" / "audit.jsonl").read_text().splitlines()]
    statuses = {a["path"].split("/")[-1]: a["status"] for a in audit}
    assert statuses["empty.txt"] == "dropped" and statuses["copy.txt"] == "duplicate"
    ev = json.loads((work / "eval.json").read_text())
    assert {"trained", "unigram"} <= set(ev["sets"]["heldout"])

    second = run_pipeline(recipe, work)
    assert set(second["status"].values()) == {"skipped"}

    recipe.train.lr = recipe.train.lr / 2
    third = run_pipeline(recipe, work)
    assert [third["status"][s] for s in ("ingest", "tokenizer", "pack")] == ["skipped"] * 3
    assert [third["status"][s] for s in ("train", "eval", "export", "report")] == ["ran"] * 4


def test_broken_artefact_is_redone(tmp_path):
    """A shard whose bytes no longer match its manifest is not trusted: pack runs again."""
    docs = write_reference_docs(tmp_path / "docs", n=40)
    recipe = small_recipe([docs], max_steps=2)
    work = tmp_path / "work"
    run_pipeline(recipe, work)
    shard = sorted((work / "shards").glob("train-*.npy"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    again = run_pipeline(recipe, work)
    assert again["status"]["ingest"] == "skipped" and again["status"]["pack"] == "ran"


def test_mlm_story_eval_report_and_fill_mask(tmp_path):
    """The same road with the mlm objective: eval.json has masked accuracy for the model and the
    unigram baseline, the report shows fill-in samples, the export is a masked-LM directory."""
    docs = write_reference_docs(tmp_path / "docs", n=40)
    recipe = small_recipe([docs], "mlm", max_steps=6)
    work = tmp_path / "work"
    run_pipeline(recipe, work)
    ev = json.loads((work / "eval.json").read_text())
    heldout = ev["sets"]["heldout"]
    assert 0.0 <= heldout["trained"]["masked_accuracy"] <= 1.0 and "masked_accuracy" in heldout["unigram"]
    assert heldout["trained"]["tokens"] == heldout["unigram"]["tokens"] > 0
    assert ev["samples"] and all("<mask>" in s["text"] and len(s["predictions"]) == 5 for s in ev["samples"])
    assert "ForMaskedLM" in json.loads((work / "model" / "config.json").read_text())["architectures"][0]
    html = (work / "report.html").read_text()
    assert ev["samples"][0]["answer"] in html


def test_an_embedding_base_that_pools_by_cls_is_refused_naming_the_pooling(tmp_path):
    """Training and export pool by the mean; a [CLS]-pooling base (BGE) would change silently, so it stops."""
    from selfsup.errors import UsageError
    from selfsup.pipeline import check_mean_pooling

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "", "type": "sentence_transformers.models.Transformer"},
                                                       {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                     "pooling_mode_mean_tokens": False}))
    with pytest.raises(UsageError, match="cls_token"):
        check_mean_pooling(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": False,
                                                                     "pooling_mode_mean_tokens": True, "include_prompt": True}))
    check_mean_pooling(tmp_path)  # mean pooling: accepted
