"""The upgrade story: a domain adaptation outlives its base model.

Tiny base A (llama, byte-level BPE) is pretrained on text X; base B is another family (Qwen2) with
another tokenizer (a Metaspace BPE that puts BOS before text). A is adapted to domain Y; the run
is rebased onto B with one command; `selfsup compare` puts all four models on one page."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfsup.evaluation.compare import heldout_documents
from selfsup.manifest import manifest_digest
from selfsup.models.identity import model_fingerprint
from selfsup.pipeline import run_pipeline
from selfsup.workdir import Workdir
from tests.conftest import small_recipe, write_reference_docs
from tests.test_lift_story import write_module_docs

pytestmark = pytest.mark.slow


def build_qwen2_base(folder: Path, texts: list[str]) -> Path:
    """A tiny random Qwen2 with a tokenizer of its own (SentencePiece-style BPE, BOS before text)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=700, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


def selfsup(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)


def test_rebase_onto_another_family_reuses_the_corpus_and_compare_shows_all_four_models(tmp_path: Path):
    """rebase: no file is extracted again, the held-out split is identical, the tokenizer is the new
    base's, and the model card names the new base with its fingerprint and the corpus digest.
    compare: four models on one page with the 2×2 and the decision; a second compare scores nothing;
    runs over different held-out documents are refused, naming the difference, unless --common."""
    general = write_reference_docs(tmp_path / "general", n=60)
    base_a = Path(run_pipeline(small_recipe([general], max_steps=30), tmp_path / "pretrained-a")["model"])
    base_b = build_qwen2_base(tmp_path / "base-b", [p.read_text() for p in sorted(general.iterdir())])

    domain = write_module_docs(tmp_path / "domain")
    recipe = small_recipe([domain], max_steps=16, lr=1e-3)
    recipe.model.base = base_a
    recipe.eval.texts = [general]
    recipe.eval.cloze_probes = 6
    recipe.eval.cloze_candidates = 4
    old = Workdir(tmp_path / "adapted-a")
    run_pipeline(recipe, old.root)

    new = Workdir(tmp_path / "adapted-b")
    done = selfsup("rebase", old.root, "--base", base_b, "--workdir", new.root, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    state = json.loads((new.root / "pipeline.json").read_text())
    assert "ingest" not in state, "the corpus was carried over, not ingested again"
    assert manifest_digest(new.corpus) == manifest_digest(old.corpus)
    assert heldout_documents(new.root) == heldout_documents(old.root)
    assert json.loads((new.tokenizer / "tokenizer.json").read_text())["pre_tokenizer"]["type"] == "Metaspace"
    lineage = json.loads((new.root / "lineage.json").read_text())
    assert lineage["base"]["fingerprint"] == model_fingerprint(base_b) and lineage["base"]["model_type"] == "qwen2"
    card = (new.model / "README.md").read_text()
    assert "**base-b**" in card and model_fingerprint(base_b) in card and lineage["corpus_digest"] in card
    shards_index = json.loads((new.shards / "index.json").read_text())
    assert shards_index["opener_id"] is not None  # B's models read BOS before each document

    page = tmp_path / "cmp" / "compare.html"
    started = time.perf_counter()
    done = selfsup("compare", new.root, "--out", page, cwd=tmp_path)  # the rebased run brings its origin
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    first_seconds = time.perf_counter() - started
    result = json.loads(page.with_suffix(".json").read_text())
    roles = sorted((m["role"], m["run"]) for m in result["models"])
    assert roles == [("adapted", "adapted-a"), ("adapted", "adapted-b"), ("base", "adapted-a"), ("base", "adapted-b")]
    for m in result["models"]:
        assert m["scores"]["heldout"]["bytes"] == result["evidence"]["bytes"]  # the same bytes for every model
        assert {"heldout", "general", "cloze"} <= set(m["scores"])
    square = result["square"]
    assert square["old_run"] == "adapted-a" and square["new_run"] == "adapted-b"
    assert result["decision"][0].startswith("New base alone: ") and "Re-adapting the new base" in result["decision"][1]
    html = page.read_text()
    assert "Old base and new base, alone and adapted" in html and html.count("<tr><td>") >= 4 and "data:image/png" in html
    assert square["new_adapted"]["domain"] < square["new_base"]["domain"]  # 16 steps on the domain help a random base

    again = selfsup("compare", new.root, old.root, "--out", page, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(m["cached"] for m in json.loads(page.with_suffix(".json").read_text())["models"])

    other = small_recipe([general], max_steps=4)
    run_pipeline(other, tmp_path / "other")
    refused = selfsup("compare", old.root, tmp_path / "other", "--out", tmp_path / "x.html", cwd=tmp_path)
    assert refused.returncode == 2 and "not evaluated on the same held-out documents" in refused.stdout + refused.stderr
    assert first_seconds > 0
