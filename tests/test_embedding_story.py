"""The embedding story: a sentence encoder (a tiny one, pretrained here with the sentence-transformers
layout and its Normalize module, as all-MiniLM-L6-v2 ships) is continued on a new folder with
pairs mined from the documents' structure; its held-out questions find their passages better than
the base's did, the report opens on the retrieval table with examples, and the export loads in
sentence-transformers unchanged, Normalize included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from selfsup.pipeline import run_pipeline
from tests.conftest import small_recipe, write_reference_docs
from tests.test_lift_story import write_module_docs

pytestmark = pytest.mark.slow


def _as_sentence_transformer_with_normalize(model_dir: Path) -> None:
    modules = json.loads((model_dir / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "2_Normalize").mkdir()
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 96, "do_lower_case": False}))


def test_continued_encoder_retrieves_better_than_its_base_and_exports_unchanged_for_sentence_transformers(tmp_path):
    general = write_reference_docs(tmp_path / "general", n=60)
    pretrain = small_recipe([general], "contrastive", max_steps=30, lr=1e-3, batch_size=16)
    pretrain.objective.passage_tokens = 32
    base = tmp_path / "base"
    shutil.copytree(run_pipeline(pretrain, tmp_path / "pretrained")["model"], base)
    _as_sentence_transformer_with_normalize(base)

    domain = write_module_docs(tmp_path / "domain")
    recipe = small_recipe([domain], "contrastive", max_steps=40, lr=1e-3, batch_size=16)
    recipe.objective.passage_tokens = 32
    recipe.model.base = base
    recipe.corpus.validation_fraction = 0.2
    recipe.eval.max_documents = 40
    out = run_pipeline(recipe, tmp_path / "work")

    pairs = json.loads((tmp_path / "work" / "pairs" / "pairs.json").read_text())
    assert pairs["train"]["pairs"] > 100 and pairs["train"]["bm25_negatives"] > 0.9 * pairs["train"]["pairs"]
    result = json.loads(Path(out["eval"]).read_text())
    models = result["sets"]["heldout"]
    assert models["trained"]["mrr"] > models["untrained"]["mrr"], models  # the base, before training
    assert set(models["trained"]["kinds"]) == {"title", "first_sentence", "ict"}
    assert {e["kind"] for e in result["retrieval_examples"]} == {"title", "first_sentence", "ict"}

    html = Path(out["report"]).read_text()
    assert html.index('id="retrieval"') < html.index('id="training"')
    assert "adapted" in html and "BM25 (no training)" in html and "drawn at random" in html and "its passage:" in html

    st = pytest.importorskip("sentence_transformers")
    model_dir = Path(out["model"])
    assert json.loads((model_dir / "modules.json").read_text())[-1]["path"] == "2_Normalize"
    assert json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 96  # the base's
    texts = ["json.dumps serialises an object", "A heap queue keeps the smallest item first."]
    theirs = torch.as_tensor(st.SentenceTransformer(str(model_dir), device="cpu").encode(texts))
    assert torch.allclose(theirs.norm(dim=-1), torch.ones(2), atol=1e-5)

    from transformers import AutoModel, AutoTokenizer
    model, tok = AutoModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-4)
