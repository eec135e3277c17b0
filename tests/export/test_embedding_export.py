"""An embedding export loads in plain transformers (AutoModel + mean pooling) and in
sentence-transformers, and both give the same vectors."""

import json

import pytest
import torch


def test_contrastive_export_loads_in_automodel_and_sentence_transformers(tmp_path, prepared):
    from transformers import AutoModel, AutoTokenizer

    from selfsup.config import Recipe
    from selfsup.export import export_model
    from selfsup.models import build_model
    from selfsup.tokens import load_tokenizer, special_ids

    tok = load_tokenizer(prepared["tokenizer"])
    recipe = Recipe()
    recipe.objective.name = "contrastive"
    recipe.pack.seq_len = 64
    torch.manual_seed(0)
    build_model("contrastive", "tiny", vocab_size=len(tok), seq_len=64, special_ids=special_ids(tok)).save_pretrained(tmp_path / "ckpt")
    export_model(tmp_path / "ckpt", prepared["tokenizer"], tmp_path / "model", recipe)

    out = tmp_path / "model"
    assert json.loads((out / "modules.json").read_text())[1]["path"] == "1_Pooling"
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    texts = ["The value is stored in a table.", "A short one."]
    model, hf_tok = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    batch = hf_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = (hidden * mask).sum(1) / mask.sum(1)

    st = pytest.importorskip("sentence_transformers")
    theirs = torch.as_tensor(st.SentenceTransformer(str(out), device="cpu").encode(texts))
    assert torch.allclose(ours, theirs, atol=1e-4)
