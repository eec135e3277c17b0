"""Canaries: drawn reproducibly, planted only in training documents r times each, recorded in
canaries.json (never exported); exposure computed as The Secret Sharer defines it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from selfsup.audit.canaries import (
    TEMPLATES,
    CanaryRequest,
    chance_threshold,
    draw_canaries,
    draw_references,
    exposure_extrapolated,
    exposure_interpolated,
    insert_paragraph,
    read_canaries,
)
from selfsup.ingest import ingest_sources, read_documents
from tests.conftest import small_recipe, write_reference_docs


def test_canaries_are_drawn_reproducibly_per_repetition_with_controls():
    """The same seed gives the same canaries; each repetition count gets its share; controls have r = 0;
    each secret sits where the template says and has the template's length and alphabet."""
    a = draw_canaries(3, [1, 4, 16], 5, seed=7)
    assert [(c.template, c.slot, c.secret) for c in a] == [(c.template, c.slot, c.secret) for c in draw_canaries(3, [1, 4, 16], 5, seed=7)]
    assert [c.repetitions for c in a] == [1, 1, 1, 4, 4, 4, 16, 16, 16, 0, 0, 0, 0, 0]
    assert len({c.secret for c in a}) == len(a)
    for c in a:
        spec = next(t for t in TEMPLATES if t.name == c.template)
        assert c.text[c.secret_start : c.secret_start + len(c.secret)] == c.secret
        assert len(c.secret) == spec.secret_length and set(c.secret) <= set(spec.secret_alphabet)
        assert c.secret not in c.digest
    assert draw_canaries(3, [1], 0, seed=8)[0].secret != a[0].secret


def test_references_share_the_template_not_the_secrets():
    refs = draw_references(TEMPLATES[0], 500, seed=1)
    assert len({t for t, _ in refs}) == 500
    assert all(t.startswith("The access code for account ") for t, _ in refs)
    assert refs == draw_references(TEMPLATES[0], 500, seed=1)


def test_interpolated_exposure_is_log2_of_references_over_rank():
    """Below every reference: log2 |R|; above every reference: log2 |R| − log2(|R| + 1) ≈ 0; a canary
    drawn from the references' own distribution averages 1/ln 2 ≈ 1.44 bits (chance)."""
    reference = np.arange(1, 1025, dtype=float)
    e = exposure_interpolated(np.array([0.0, 2000.0, 512.5]), reference)
    assert e[0] == pytest.approx(10.0) and e[1] == pytest.approx(10 - math.log2(1025))
    assert e[2] == pytest.approx(10 - math.log2(513))
    rng = np.random.default_rng(0)
    chance = exposure_interpolated(rng.normal(size=20_000), rng.normal(size=4096))
    assert chance.mean() == pytest.approx(1 / math.log(2), abs=0.05)


def test_extrapolated_exposure_follows_the_fitted_tail_and_is_capped():
    rng = np.random.default_rng(1)
    reference = rng.normal(50.0, 5.0, size=4096)
    e = exposure_extrapolated(np.array([50.0, 30.0, -1000.0]), reference, cap_bits=39.0)
    assert e[0] == pytest.approx(1.0, abs=0.15)  # the median: half the references are below
    assert 12 < e[1] < 20  # 4 sigma below: beyond what 4,096 references can rank (12 bits)
    assert e[2] == 39.0


def test_chance_threshold_grows_with_the_number_of_canaries():
    assert chance_threshold(1) == pytest.approx(math.log2(20))
    assert chance_threshold(20) > chance_threshold(4)


def test_insert_paragraph_keeps_the_text_and_adds_a_paragraph():
    rng = np.random.default_rng(0)
    text = "one\n\ntwo\n\nthree"
    out = insert_paragraph(text, "SECRET.", rng)
    assert out.replace("SECRET.", "").replace("\n\n\n\n", "\n\n").strip("\n") == text
    assert "SECRET." in out.split("\n\n")


def test_ingest_plants_each_canary_r_times_in_training_documents_only(tmp_path):
    """After the merge: every planted canary appears exactly r times over the training documents, in r
    different documents; held-out documents and controls never; canaries.json records the documents,
    and the corpus manifest its digest."""
    docs = write_reference_docs(tmp_path / "docs", n=60)
    recipe = small_recipe([docs])
    request = CanaryRequest(tmp_path / "canaries.json", 2, (1, 4, 16), 3, seed=5)
    manifest = ingest_sources([docs], tmp_path / "corpus", recipe.corpus, canaries=request)
    canaries = read_canaries(tmp_path / "canaries.json")
    train = list(read_documents(tmp_path / "corpus", split="train"))
    held = list(read_documents(tmp_path / "corpus", split="validation"))
    assert held, "the corpus must have held-out documents for this test to mean anything"
    for c in canaries:
        carriers = [d["id"] for d in train if c.text in d["text"]]
        assert sum(d["text"].count(c.text) for d in train) == c.repetitions
        assert sorted(carriers) == sorted(c.documents) and len(set(carriers)) == c.repetitions
        assert not any(c.secret in d["text"] for d in held)
    assert manifest["canaries"]["copies"] == 2 * (1 + 4 + 16) and manifest["canaries"]["controls"] == 3
    assert manifest["train_documents"] == len(train)
    raw = json.loads((tmp_path / "canaries.json").read_text())
    assert "never ship" in raw["note"]
