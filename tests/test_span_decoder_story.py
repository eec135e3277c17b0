"""Span corruption on a decoder base, mixed into next-token training: "mask a span, predict it" for a
model that reads left to right. A tiny random Qwen2 base (a tokenizer with no sentinels) is continued
on a domain with mix = {clm = 0.5, span = 0.5}: the tokenizer gains <extra_id_N>, both objectives
train, the evaluation scores the hidden spans, and the exported model loads in transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from selfsup.evaluation.bits_per_byte import document_sequences
from selfsup.evaluation.spans import decoder_span_questions, score_decoder_spans
from selfsup.ingest import read_documents
from selfsup.models import load_pretrained
from selfsup.models.extend import extend_embeddings
from selfsup.objectives import get_objective
from selfsup.pipeline import run_pipeline
from selfsup.tokens import document_encoder, document_opener, load_tokenizer, special_ids, token_byte_lengths
from selfsup.tokens.extend import DECODER_SENTINELS, read_extension
from selfsup.workdir import Workdir
from tests.conftest import small_recipe, write_reference_docs
from tests.test_lift_story import write_module_docs
from tests.test_rebase_story import build_qwen2_base

pytestmark = pytest.mark.slow


def test_a_decoder_base_learns_to_write_hidden_spans_in_a_clm_span_mix(tmp_path: Path):
    general = write_reference_docs(tmp_path / "general", n=40)
    base = build_qwen2_base(tmp_path / "base", [p.read_text() for p in sorted(general.iterdir())])
    recipe = small_recipe([write_module_docs(tmp_path / "domain")], max_steps=40, lr=2e-3, precision="fp32")
    recipe.model.base = base
    recipe.objective.mix = {"clm": 0.5, "span": 0.5}
    work = Workdir(tmp_path / "work")
    run_pipeline(recipe, work.root)

    tokenizer_manifest = json.loads((work.tokenizer / "manifest.json").read_text())
    assert tokenizer_manifest["sentinels"]["added"] == DECODER_SENTINELS
    run = json.loads((work.root / "run" / "run.json").read_text())
    drawn = run["mix"]["micro_batches"]
    assert set(drawn) == {"clm", "span"} and sum(drawn.values()) == 40 and min(drawn.values()) >= 8  # about half each

    evaluation = json.loads((work.root / "eval.json").read_text())
    trained = evaluation["sets"]["heldout"]["trained"]
    assert evaluation["objectives"] == ["clm", "span"] and trained["spans"] > 20
    assert {"bits_per_byte", "span_bits_per_byte", "span_exact_match"} <= set(trained)
    assert evaluation["sets"]["heldout"]["base"]["bits_per_byte"] > trained["bits_per_byte"]

    # The base, given the same sentinel rows training started from, writes the hidden spans worse.
    tok = load_tokenizer(work.tokenizer)
    ids = special_ids(tok)
    before = extend_embeddings(load_pretrained(base, "clm"), read_extension(work.tokenizer)["terms"])
    texts = [d["text"] for d in read_documents(work.corpus, split="validation", columns=("text",))]
    seqs, _, _ = document_sequences(texts, document_encoder(tok), ids["eos"], 3000, document_opener(tok))
    spans = get_objective(recipe.objective, ids, len(tok), decoder=True, name="span")
    questions = decoder_span_questions(seqs, spans, 64, 1234)
    kw = dict(batch_size=4, pad_id=ids["pad"], device=torch.device("cpu"), amp_dtype=None)
    base_scores = score_decoder_spans(before, questions, token_byte_lengths(tok), spans.sentinels, **kw)
    assert trained["span_bits_per_byte"] < base_scores["bits_per_byte"]

    model = transformers.AutoModelForCausalLM.from_pretrained(work.model, local_files_only=True)
    exported_tok = transformers.AutoTokenizer.from_pretrained(work.model, local_files_only=True)
    prompt = exported_tok("The value is <extra_id_0> in the table. <extra_id_0>", return_tensors="pt")
    assert prompt.input_ids[0].tolist().count(ids["extra_id_0"]) == 2
    assert model.generate(**prompt, max_new_tokens=4, do_sample=False).shape[1] > prompt.input_ids.shape[1]
    card = (work.model / "README.md").read_text()
    assert "mix: clm 50% + span 50%" in card and "span corruption for a decoder" in card
