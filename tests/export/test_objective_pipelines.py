"""Every objective through `run_pipeline` on the tiny fixture corpus: trains, evaluates into
eval.json (sets → heldout → model → metrics), and exports a directory plain transformers loads."""

import json

import pytest
import torch

from tests.conftest import small_recipe, write_reference_docs

EXPECTED = {
    "fim": ("trained", "unigram", "fim_exact_match"),
    "span": ("trained", "unigram", "span_exact_match"),
    "contrastive": ("trained", "bm25", "mrr"),
    "tsdae": ("trained", "untrained", "recall_at_10"),
    "mlm": ("trained", "unigram", "masked_accuracy"),
}


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(EXPECTED))
def test_objective_runs_end_to_end_and_exports(tmp_path, objective):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from selfsup.pipeline import run_pipeline

    docs = write_reference_docs(tmp_path / "docs", n=60)
    recipe = small_recipe([docs], objective, max_steps=3)
    recipe.objective.passage_tokens = 16
    recipe.eval.max_documents = 12
    run_pipeline(recipe, tmp_path / "work")

    result = json.loads((tmp_path / "work" / "eval.json").read_text())
    subject, baseline, metric = EXPECTED[objective]
    models = result["sets"]["heldout"]
    assert metric in models[subject] and metric in models[baseline]
    model_dir = tmp_path / "work" / "model"
    auto = {"fim": AutoModelForCausalLM, "span": AutoModelForSeq2SeqLM, "mlm": AutoModelForMaskedLM}.get(objective, AutoModel)
    model = auto.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("a value in the table", return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 0
    card = (model_dir / "README.md").read_text()
    assert f"`{objective}`" in card
    if objective in ("contrastive", "tsdae"):
        assert json.loads((model_dir / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
        assert type(model).__name__ == "BertModel"
        assert "mean pooling" in card
