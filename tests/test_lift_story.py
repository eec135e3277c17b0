"""The proof-of-lift story: a tiny model pretrained on one text set is continued on another, and
eval.json, metrics.jsonl and the report show the base and the adapted model side by side."""

from __future__ import annotations

import importlib
import json
import pydoc
import re
from pathlib import Path

import pytest

from selfsup.evaluation import evaluate
from selfsup.pipeline import run_pipeline
from selfsup.workdir import Workdir
from tests.conftest import small_recipe, write_reference_docs

pytestmark = pytest.mark.slow

DOMAIN_MODULES = ("sqlite3", "json", "csv", "pathlib", "argparse", "logging", "zipfile", "tarfile", "shutil",
                  "datetime", "decimal", "fractions", "textwrap", "difflib", "heapq", "bisect", "statistics")


def write_module_docs(folder: Path, chunk: int = 3000) -> Path:
    """The domain: pydoc's plain-text pages of some standard-library modules, cut into files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in DOMAIN_MODULES:
        text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
        for i in range(0, min(len(text), 4 * chunk), chunk):
            (folder / f"{name}-{i // chunk}.txt").write_text(text[i : i + chunk], encoding="utf-8")
    return folder


def test_continued_model_beats_its_base_on_the_domain_and_the_report_shows_both(tmp_path: Path):
    """Continued on the domain, the adapted model's held-out domain bits per byte is below its base's;
    eval.json carries base and adapted per set, the general set with its change, cloze and fertility;
    metrics.jsonl logs domain/general bits per byte from step 0 on, and domain falls; the report's
    first section shows both models' figures; a second evaluation reuses the cached base results."""
    general = write_reference_docs(tmp_path / "general", n=60)
    pretrain = small_recipe([general], max_steps=30)
    first = run_pipeline(pretrain, tmp_path / "pretrained")
    base_dir = Path(first["model"])
    assert (base_dir / "model.safetensors").is_file() and (base_dir / "tokenizer.json").is_file()

    domain = write_module_docs(tmp_path / "domain")
    recipe = small_recipe([domain], max_steps=20, lr=1e-3, eval_every=10)
    recipe.model.base = base_dir
    recipe.eval.texts = [general]
    recipe.eval.cloze_probes = 8
    recipe.eval.cloze_candidates = 4
    work = Workdir(tmp_path / "adapted")
    run_pipeline(recipe, work.root)

    ev = json.loads(work.eval_json.read_text())
    heldout = ev["sets"]["heldout"]
    assert heldout["trained"]["bits_per_byte"] < heldout["base"]["bits_per_byte"]
    assert {"trained", "base"} <= set(ev["sets"]["general"])
    lift = ev["lift"]
    assert lift["domain"]["change"] < 0 and lift["base_cached"] is False
    assert [g["set"] for g in lift["general"]] == ["general"] and lift["forgetting"] == lift["general"][0]["change"]
    assert set(ev["cloze"]["models"]) == {"trained", "base", "chance"} and ev["cloze"]["probes"] > 0
    assert {"base", "domain"} <= set(ev["fertility"]["tokenizers"])

    points = [json.loads(x) for x in (work.run / "metrics.jsonl").read_text().splitlines()]
    tradeoff = [p for p in points if "domain_bpb" in p]
    assert tradeoff[0]["step"] == 0 and "general_bpb" in tradeoff[0]
    assert tradeoff[-1]["step"] == 20 and tradeoff[-1]["domain_bpb"] < tradeoff[0]["domain_bpb"]

    page = work.report_html.read_text()
    lift_html = re.search(r'<section id="lift">(.*?)</section>', page, re.S).group(1)
    assert page.index('<section id="lift">') < page.index('<section id="training">')  # the first section
    for model in ("base", "trained"):
        for name in ("heldout", "general"):
            assert f"{ev['sets'][name][model]['bits_per_byte']:.3f}" in lift_html
    assert "General text (general) got" in lift_html and "Cloze probes" in lift_html and "data:image/png" in lift_html

    again = evaluate(work.run, work.corpus, work.tokenizer, work.shards, work.eval_json, _resolved(recipe, work))
    assert again["lift"]["base_cached"] is True
    assert again["sets"]["heldout"]["base"] == heldout["base"]


def _resolved(recipe, work: Workdir):
    """The recipe as the pipeline hands it to eval: the base's tokenizer is the tokenizer."""
    resolved = recipe.model_copy(deep=True)
    resolved.tokenizer.from_dir = resolved.model.base
    return resolved
