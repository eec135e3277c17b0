"""Span corruption and fill-in-the-middle on a decoder base, mixed into next-token training: "mask a
span, predict it" for a model that reads left to right. A tiny random Qwen2 base (a tokenizer with no
sentinels at all) is continued on a domain with mix = {clm = 0.4, fim = 0.3, span = 0.3}: the
tokenizer gains <fim_*> and <extra_id_N>, all three objectives train, the evaluation scores hidden
spans and middles, and the exported model loads in transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from selfsup.pipeline import run_pipeline
from selfsup.tokens import load_tokenizer, special_ids
from selfsup.tokens.extend import DECODER_SENTINELS
from selfsup.workdir import Workdir
from tests.conftest import small_recipe, write_reference_docs
from tests.test_lift_story import write_module_docs
from tests.test_rebase_story import build_qwen2_base

pytestmark = pytest.mark.slow


def test_a_decoder_base_learns_to_write_hidden_spans_in_a_clm_fim_span_mix(tmp_path: Path):
    general = write_reference_docs(tmp_path / "general", n=40)
    base = build_qwen2_base(tmp_path / "base", [p.read_text() for p in sorted(general.iterdir())])
    recipe = small_recipe([write_module_docs(tmp_path / "domain")], max_steps=40, lr=2e-3, precision="fp32")
    recipe.model.base = base
    recipe.objective.mix = {"clm": 0.4, "fim": 0.3, "span": 0.3}
    work = Workdir(tmp_path / "work")
    run_pipeline(recipe, work.root)

    tokenizer_manifest = json.loads((work.tokenizer / "manifest.json").read_text())
    assert tokenizer_manifest["sentinels"]["added"] == 3 + DECODER_SENTINELS
    run = json.loads((work.root / "run" / "run.json").read_text())
    drawn = run["mix"]["micro_batches"]
    assert set(drawn) == {"clm", "fim", "span"} and sum(drawn.values()) == 40 and min(drawn.values()) >= 3  # seeded: 21 / 5 / 14

    evaluation = json.loads((work.root / "eval.json").read_text())
    trained = evaluation["sets"]["heldout"]["trained"]
    assert evaluation["objectives"] == ["clm", "fim", "span"] and trained["spans"] > 20
    assert {"bits_per_byte", "span_bits_per_byte", "span_exact_match", "fim_exact_match"} <= set(trained)
    assert evaluation["sets"]["heldout"]["base"]["bits_per_byte"] > trained["bits_per_byte"]

    # The base, scored as training started (the added sentinel rows set from their spelling), writes the
    # hidden spans worse; it is asked for middles too.
    base_scores = evaluation["sets"]["heldout"]["base"]
    assert trained["span_bits_per_byte"] < base_scores["span_bits_per_byte"] and "fim_exact_match" in base_scores
    # Held-out lines hidden and filled in by both models, shown on the report's first section.
    examples = evaluation["infill_examples"]
    assert len(examples) == 3 and all(set(e["fills"]) == {"base", "trained"} and e["answer"] for e in examples)
    assert "Infill: a held-out line hidden" in (work.root / "report.html").read_text()
    ids = special_ids(load_tokenizer(work.tokenizer))

    model = transformers.AutoModelForCausalLM.from_pretrained(work.model, local_files_only=True)
    exported_tok = transformers.AutoTokenizer.from_pretrained(work.model, local_files_only=True)
    prompt = exported_tok("The value is <extra_id_0> in the table. <extra_id_0>", return_tensors="pt")
    assert prompt.input_ids[0].tolist().count(ids["extra_id_0"]) == 2
    assert model.generate(**prompt, max_new_tokens=4, do_sample=False).shape[1] > prompt.input_ids.shape[1]
    card = (work.model / "README.md").read_text()
    assert "mix: clm 40% + fim 30% + span 30%" in card and "span corruption for a decoder" in card
