"""The audit as a pipeline stage: canaries change the ingest fingerprint, a corpus is up to date only with
the canaries.json it was planted with, and embedding objectives are refused by name."""

from __future__ import annotations

import pytest

from selfsup.audit.canaries import canaries_intact
from selfsup.audit.run import run_audit
from selfsup.config import Recipe
from selfsup.errors import UsageError
from selfsup.ingest import ingest_sources
from selfsup.pipeline import _canaries_intact, canary_request, ingest_fingerprint
from selfsup.workdir import Workdir
from tests.conftest import small_recipe, write_reference_docs


def test_canaries_change_the_ingest_fingerprint(tmp_path):
    docs = write_reference_docs(tmp_path / "docs", n=5)
    recipe = small_recipe([docs])
    wd = Workdir(tmp_path / "work")
    plain = ingest_fingerprint(recipe, canary_request(recipe, wd), exclude=[])
    recipe.audit.canaries = True
    planted = ingest_fingerprint(recipe, canary_request(recipe, wd), exclude=[])
    recipe.audit.repetitions = [1, 2]
    assert len({plain, planted, ingest_fingerprint(recipe, canary_request(recipe, wd), exclude=[])}) == 3
    assert canary_request(recipe, wd).seed == recipe.train.seed and canary_request(recipe, wd).path == wd.canaries


def test_a_planted_corpus_is_stale_without_its_canaries_file(tmp_path):
    docs = write_reference_docs(tmp_path / "docs", n=20)
    recipe = small_recipe([docs])
    recipe.audit.canaries = True
    wd = Workdir(tmp_path / "work")
    request = canary_request(recipe, wd)
    manifest = ingest_sources([docs], wd.corpus, recipe.corpus, canaries=request)
    assert _canaries_intact(wd, request) and canaries_intact(wd.canaries, manifest["canaries"])
    wd.canaries.write_text(wd.canaries.read_text().replace("c000", "c999"))
    assert not _canaries_intact(wd, request)
    wd.canaries.unlink()
    assert not _canaries_intact(wd, request)
    assert not _canaries_intact(wd, None)  # a planted corpus is not what a recipe without canaries asks for


@pytest.mark.parametrize("objective", ["contrastive", "tsdae"])
def test_embedding_objectives_are_refused_by_name(tmp_path, objective):
    recipe = Recipe()
    recipe.objective.name = objective
    with pytest.raises(UsageError, match=f"not {objective}"):
        run_audit(tmp_path, recipe)


def test_selfsup_audit_at_the_recipes_profile_counts_as_the_stage(tmp_path):
    """`selfsup audit` writes the fingerprint the pipeline's stage checks (so `selfsup run` does not audit
    again); another profile writes another one (and the next `run` audits at the recipe's)."""
    from selfsup.pipeline import audit_stage_fingerprint

    recipe, wd = Recipe(), Workdir(tmp_path)
    assert audit_stage_fingerprint(recipe, wd) == audit_stage_fingerprint(recipe, wd, "quick")
    assert audit_stage_fingerprint(recipe, wd, "full") != audit_stage_fingerprint(recipe, wd)


def test_selfsup_ingest_plants_the_canaries_a_recipe_asks_for(tmp_path):
    """Stage by stage, `selfsup ingest --config` with [audit] canaries plants them too, recorded beside the corpus."""
    import json
    import subprocess
    import sys

    docs = write_reference_docs(tmp_path / "docs", n=20)
    (tmp_path / "recipe.toml").write_text("[corpus]\nvalidation_fraction = 0.1\nworkers = 0\n\n[audit]\ncanaries = true\n")
    out = tmp_path / "work" / "corpus"
    done = subprocess.run([sys.executable, "-m", "selfsup", "ingest", str(docs), "--out", str(out), "--config",
                           str(tmp_path / "recipe.toml")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert canaries_intact(tmp_path / "work" / "canaries.json", manifest["canaries"])
