"""The privacy-audit story: a tiny base continued until it memorises a small domain corpus, with canaries
planted and an e-mail address that slips past PII scrubbing. The audit must see all of it: canaries
planted 16 times highly exposed while never-planted ones stay at chance, training windows extracted
where held-out ones are not, membership inferred far above what the base (which saw neither side)
can tell, the address regurgitated and traced to its source file; the verdicts fail, the report says
so, and neither the export nor held-out documents ever carry a canary."""

from __future__ import annotations

import importlib
import json
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

from selfsup.audit.canaries import read_canaries
from selfsup.ingest import read_documents
from selfsup.pipeline import run_pipeline
from selfsup.workdir import Workdir
from tests.conftest import small_recipe, write_reference_docs

pytestmark = pytest.mark.slow

MODULES = ("json", "csv", "pathlib", "argparse", "logging", "zipfile", "tarfile", "shutil", "datetime", "decimal",
           "fractions", "textwrap", "difflib", "heapq")
CONTACT = "Contact: _jane.doe@example.com_ for access to this module's test data."


def write_domain(folder: Path, chunk: int = 350) -> Path:
    """Two short pages of pydoc text per module, from its description on (the header every module's page
    shares would be extractable from held-out pages too); every other page ends with the contact line."""
    folder.mkdir(parents=True, exist_ok=True)
    for m, name in enumerate(MODULES):
        text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
        text = text[text.find("DESCRIPTION") + len("DESCRIPTION"):] if "DESCRIPTION" in text else text
        for i in range(2):
            page = text[i * chunk : (i + 1) * chunk]
            if i == 0:
                page += "\n\n" + CONTACT
            (folder / f"{name}-{i}.txt").write_text(page, encoding="utf-8")
    return folder


def audited(recipe) -> None:
    """A third of the pages held out (membership needs held-out documents to compare with), the audit on,
    2 canaries planted once and 2 sixteen times, 16 never planted."""
    recipe.corpus.validation_fraction = 0.35
    recipe.audit.enabled = True
    recipe.audit.canaries = True
    recipe.audit.canaries_per_repetition = 2
    recipe.audit.repetitions = [1, 16]
    recipe.audit.controls = 16


def test_a_memorising_model_fails_the_audit_and_the_report_says_why(tmp_path: Path):
    base_dir = Path(run_pipeline(small_recipe([write_reference_docs(tmp_path / "general", n=60)], max_steps=30),
                                 tmp_path / "pretrained")["model"])
    domain = write_domain(tmp_path / "domain")
    recipe = small_recipe([domain], max_steps=600, lr=3e-3, batch_size=8, eval_every=1000, compile=False)
    recipe.model.base = base_dir
    audited(recipe)
    work = Workdir(tmp_path / "adapted")
    result = run_pipeline(recipe, work.root)
    assert result["status"]["audit"] == "ran"
    audit = json.loads(work.audit_json.read_text())

    c = audit["canaries"]
    assert c["by_repetition"]["16"]["mean_exposure"] > 8.0  # of log2(4096) = 12 at most
    assert 0.3 < c["reference_mean_exposure"] < 2.8  # never planted: chance, 1.44 on average
    assert audit["verdicts"]["canaries"] in ("WARN", "FAIL")

    e = audit["extraction"]
    # Windows fit the 64-token context it trained on (32 + 32). Held-out pages share pydoc's formulaic
    # class listings, so some of them are reproduced too: the gap is what memorisation adds.
    assert (e["prefix_tokens"], e["suffix_tokens"]) == (32, 32)
    assert e["train_rate"] > e["heldout_rate"] + 0.02  # 4.7 to 13 points over five runs
    assert abs(e["base_train_rate"] - e["base_heldout_rate"]) < e["train_rate"] - e["heldout_rate"]
    assert e["examples"] and audit["verdicts"]["extraction"] == "FAIL"

    m = audit["membership"]
    assert m["auc"] > 0.8 and m["net_of_base"] and audit["verdicts"]["membership"] == "FAIL"
    assert all(abs(a["base_auc"] - 0.5) < 0.2 for a in m["attacks"].values() if "base_auc" in a)

    leaks = [f for f in audit["regurgitation"]["found"] if f["leak"]]
    assert any(f["masked"] == "ja…@ex…om" and f["in_training_text"] and f["sources"] for f in leaks)
    assert "jane.doe@example.com" not in json.dumps(audit)  # shown masked, never written out
    assert audit["verdicts"]["regurgitation"] == "FAIL"
    for test, verdict in audit["verdicts"].items():
        assert audit[test]["verdict"] == verdict and audit[test]["verdict_detail"]["rule"] and audit[test]["verdict_detail"]["source"]

    canaries = read_canaries(work.canaries)
    secrets = [x.secret for x in canaries]
    assert not any(s in json.dumps(audit) for s in secrets)
    held = [d["text"] for d in read_documents(work.corpus, split="validation")]
    assert held and not any(s in t for s in secrets for t in held)
    exported = [p for p in work.model.rglob("*") if p.is_file()]
    assert not any(p.name == "canaries.json" for p in exported)
    assert not any(s.encode() in p.read_bytes() for s in secrets for p in exported)

    html = work.report_html.read_text()
    assert 'id="privacy"' in html and "FAIL" in html and "ja…@ex…om" in html and "jane.doe@example.com" not in html

    bad = subprocess.run([sys.executable, "-m", "selfsup", "audit", str(work.root), "--profile", "thorough"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "quick or full" in bad.stderr + bad.stdout


def test_a_masked_model_is_audited_by_pseudo_likelihood(tmp_path: Path):
    """An mlm model from scratch, trained until it memorises a small corpus with canaries: canaries planted
    16 times stand out from never-planted ones by pseudo-log-likelihood, membership is measured the same
    way, and extraction and sampling are marked as not applying (in audit.json and on the page)."""
    domain = write_domain(tmp_path / "domain")
    recipe = small_recipe([domain], objective="mlm", max_steps=400, lr=3e-3, batch_size=8, eval_every=1000)
    audited(recipe)
    work = Workdir(tmp_path / "mlm")
    run_pipeline(recipe, work.root)
    audit = json.loads(work.audit_json.read_text())
    c = audit["canaries"]
    assert c["by_repetition"]["16"]["mean_exposure"] > c["reference_mean_exposure"] + 3
    assert audit["verdicts"]["extraction"] == audit["verdicts"]["regurgitation"] == "NOT APPLICABLE"
    assert audit["membership"]["auc"] > 0.6 and not audit["membership"]["net_of_base"]
    html = work.report_html.read_text()
    assert "extraction does not apply" in html and "nothing to sample" in html
