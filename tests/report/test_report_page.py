"""The report page: what it shows from a finished run, and how it holds up when inputs are missing or hostile."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from report_fixtures import (
    HELDOUT_TRAINED_BPB,
    SAMPLE_COMPLETION,
    SAMPLE_PROMPT,
    SAMPLE_REFERENCE,
    audit_lines,
    eval_json,
    metrics_lines,
    run_json,
    write_json,
    write_jsonl,
)

import selfsup
from selfsup.errors import UsageError
from selfsup.report import build_report

HOSTILE = "<script>alert(1)</script>"
PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def section(page: str, anchor: str) -> str:
    """The HTML of one <section id=anchor> of the page."""
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"section {anchor} is missing"
    return match.group(1)


def test_full_workdir_page_shows_numbers_samples_and_reasons(full_workdir: Path, build) -> None:
    """A finished run's page carries its eval numbers, the comparison, the samples and the drop reasons."""
    page = build(full_workdir)
    assert (full_workdir / "report.html").is_file()
    evaluation = section(page, "evaluation")
    assert f"{HELDOUT_TRAINED_BPB:.3f}" in evaluation  # 1.842
    assert "2.971" in evaluation  # the unigram baseline
    assert "\u221238% bits per byte vs unigram" in evaluation
    assert "\u221238% vs unigram" in page.split("</header>")[0]  # the summary states the lift too
    samples = section(page, "samples")
    for text in (SAMPLE_PROMPT, SAMPLE_COMPLETION, SAMPLE_REFERENCE):
        assert html.escape(text) in samples
    corpus = section(page, "corpus")
    for reason in ("empty", "binary", "unsupported_type", "duplicate"):
        assert f"<td>{reason}</td>" in corpus
    assert "manuals/blob-0.bin" in corpus
    assert "230,400" in corpus  # train tokens from shards/index.json
    assert "[train]" in section(page, "recipe") and "batch_size = 16" in section(page, "recipe")
    assert selfsup.__version__ in page.split("<footer>")[1]
    assert "not available" not in page.split("<nav>")[1]  # every section had its input


def test_curves_are_embedded_pngs_that_decode(full_workdir: Path, build) -> None:
    """Training curves are inline PNGs (loss, learning rate, throughput) that a decoder accepts."""
    images = PNG_URI.findall(section(build(full_workdir), "training"))
    assert len(images) == 3
    for b64 in images:
        image = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert image.format == "PNG"
        image.verify()


def test_hostile_text_is_shown_as_text(full_workdir: Path, build) -> None:
    """Text from documents, paths, names and the recipe is escaped: a <script> in it never becomes markup."""
    evaluation = eval_json()
    evaluation["sets"][HOSTILE] = {HOSTILE: {"bits_per_byte": 1.0}, "trained": {"bits_per_byte": 1.5, HOSTILE: 2.0}}
    evaluation["samples"].append({"prompt": HOSTILE, "completion": HOSTILE + '"><img src=x onerror=alert(1)>',
                                  "reference": HOSTILE})
    write_json(full_workdir / "eval.json", evaluation)
    write_jsonl(full_workdir / "corpus" / "audit.jsonl",
                [{"path": HOSTILE, "status": "dropped", "reason": HOSTILE, "doc_id": HOSTILE}])
    run = run_json()
    run["device"] = HOSTILE
    run["recipe"]["corpus"]["sources"] = [HOSTILE]
    write_json(full_workdir / "run" / "run.json", run)
    page = build(full_workdir)
    assert "<script" not in page.lower()
    assert "onerror=alert(1)>" not in page
    assert page.count(html.escape(HOSTILE, quote=False)) >= 8


def test_training_facts_show_the_chosen_rate_and_the_time_plan(full_workdir: Path, build) -> None:
    """lr = "auto": the candidates' scores and the reason for the choice; a time budget: the planned steps."""
    run = run_json()
    run.update({
        "lr": 1e-4, "schedule": "wsd", "stopped_by": "max_minutes",
        "lr_search": {"chosen": 1e-4, "reason": "largest domain gain within the forgetting limit",
                      "candidates": [{"lr": 3e-5, "domain_bpb": 0.91, "general_bpb": 0.95},
                                     {"lr": 1e-4, "domain_bpb": 0.88, "general_bpb": 0.951}]},
        "time_plan": {"total_steps": 271, "planned_at_step": 10, "step_seconds": 3.1, "eval_seconds": 20.0,
                      "eval_every": 50, "budget_minutes": 17.0, "replans": 1},
    })
    write_json(full_workdir / "run" / "run.json", run)
    training = section(build(full_workdir), "training")
    assert "chosen by lr = &#34;auto&#34;" in training or 'chosen by lr = "auto"' in training
    assert "3e-05: domain 0.910, general 0.950 bits/byte" in training
    assert "wsd, 271 steps planned for 17 minutes at step 10 (3.100 s a step, re-planned 1x" in training
    assert "max_minutes" in training


def test_page_is_self_contained(full_workdir: Path, build) -> None:
    """The page loads nothing from elsewhere: no http(s) URLs, and every src/href is a data URI or local."""
    (full_workdir / "model").mkdir()
    (full_workdir / "model" / "README.md").write_text("# model card\n")
    page = build(full_workdir)
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page
    for attr, value in re.findall(r'\b(src|href)="([^"]*)"', page):
        if attr == "src":
            assert value.startswith("data:image/png;base64,")
        else:
            assert value.startswith(("#", "./")), value


def test_model_link_points_at_the_exported_directory(full_workdir: Path, tmp_path: Path) -> None:
    """An exported model (model/README.md) is linked relative to the page, wherever the page is written."""
    (full_workdir / "model").mkdir()
    (full_workdir / "model" / "README.md").write_text("# model card\n")
    page = build_report(full_workdir).read_text()
    assert 'href="./model/"' in page and 'href="./model/README.md"' in page
    elsewhere = build_report(full_workdir, tmp_path / "out" / "r.html").read_text()
    assert 'href="./../work/model/"' in elsewhere


@pytest.mark.parametrize(
    "damage, note",
    [
        (lambda wd: (wd / "run" / "metrics.jsonl").unlink(), "run/metrics.jsonl not found"),
        (lambda wd: (wd / "run" / "metrics.jsonl").write_text(""), "run/metrics.jsonl has no training or validation"),
        (lambda wd: (wd / "run" / "metrics.jsonl").write_text('{"step": 1, "lo'), "run/metrics.jsonl has no training"),
    ],
    ids=["missing", "empty", "only-a-truncated-line"],
)
def test_training_without_metrics_says_why(full_workdir: Path, build, damage, note: str) -> None:
    """Missing, empty or unreadable metrics give a 'not available' note in Training; the rest still renders."""
    damage(full_workdir)
    page = build(full_workdir)
    training = section(page, "training")
    assert f"not available: {note}" in training
    assert not PNG_URI.search(training)
    assert "1,234,567" in training  # run.json facts still shown
    assert "1.842" in section(page, "evaluation")


def test_truncated_last_metrics_line_is_skipped(full_workdir: Path, build) -> None:
    """A run killed mid-write leaves half a line: the curves use the whole lines and say one was skipped."""
    path = full_workdir / "run" / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 61, "loss": 3.9, "l')
    training = section(build(full_workdir), "training")
    assert len(PNG_URI.findall(training)) == 3
    assert "1 unreadable line in run/metrics.jsonl skipped" in training
    assert "train loss at step 60" in training


def test_missing_eval_gives_notes_in_evaluation_and_samples(full_workdir: Path, build) -> None:
    """Without eval.json, Evaluation and Samples say so; the page still has training and corpus."""
    (full_workdir / "eval.json").unlink()
    page = build(full_workdir)
    for anchor in ("evaluation", "samples"):
        assert "not available: eval.json not found" in section(page, anchor)
    assert PNG_URI.search(section(page, "training"))
    assert "bits per byte" not in page.split("</header>")[0]


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2, 3]", json.dumps({"sets": [1, 2]}), json.dumps({"sets": {"heldout": {"trained": 5}}}),
     json.dumps({"sets": {"heldout": {"trained": {"bits_per_byte": "low"}}}, "samples": "none"})],
    ids=["invalid-json", "a-list", "sets-a-list", "model-not-a-dict", "strings-for-numbers"],
)
def test_malformed_eval_json_never_breaks_the_page(full_workdir: Path, build, content: str) -> None:
    """An eval.json of the wrong shape costs at most its own sections, never the page."""
    (full_workdir / "eval.json").write_text(content)
    page = build(full_workdir)
    assert PNG_URI.search(section(page, "training"))
    assert "manuals/blob-0.bin" in section(page, "corpus")


def test_malformed_corpus_and_run_files_give_notes(full_workdir: Path, build) -> None:
    """Damaged corpus manifest, audit lines and run.json are reported as such, not raised."""
    (full_workdir / "corpus" / "manifest.json").write_text('"just a string"')
    audit = full_workdir / "corpus" / "audit.jsonl"
    audit.write_text(audit.read_text() + "garbage\n[1]\n")
    write_json(full_workdir / "run" / "run.json", {"parameters": "many", "recipe": "none", "steps": None})
    page = build(full_workdir)
    assert "not available: corpus/manifest.json holds a JSON str, not an object" in section(page, "corpus")
    assert "<td>binary</td>" in section(page, "corpus")  # counts fall back on the audit
    assert "not available: run/run.json does not record its recipe" in section(page, "recipe")


def test_empty_workdir_builds_with_notes_everywhere(tmp_path: Path, build) -> None:
    """A work directory with nothing in it yet still gets a page, every section saying what is missing."""
    page = build(tmp_path)
    for anchor in ("training", "evaluation", "samples", "corpus", "recipe"):
        assert "not available:" in section(page, anchor)
    assert "Nothing to report yet" in page


def test_missing_workdir_is_a_usage_error(tmp_path: Path) -> None:
    """Only a work directory that does not exist is refused, with the path in the message."""
    with pytest.raises(UsageError, match="does-not-exist"):
        build_report(tmp_path / "does-not-exist")


def test_written_atomically_to_the_given_path(full_workdir: Path, tmp_path: Path) -> None:
    """The page goes to out_path (parents made), replacing an old one, with no temporary file left behind."""
    out = tmp_path / "reports" / "today" / "page.html"
    out.parent.mkdir(parents=True)
    out.write_text("old page")
    assert build_report(full_workdir, out) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["page.html"]
    assert not (full_workdir / "report.html").exists()


def test_audit_table_lists_first_50_and_counts_the_rest(full_workdir: Path, build) -> None:
    """The dropped-files table shows the first 50 files not ingested and how many more there are."""
    lines = audit_lines()[:120] + [
        {"path": f"junk/file-{i:03d}.bin", "status": "dropped", "reason": "binary", "doc_id": None} for i in range(80)
    ]
    write_jsonl(full_workdir / "corpus" / "audit.jsonl", lines)
    corpus = section(build(full_workdir), "corpus")
    assert "junk/file-049.bin" in corpus and "junk/file-050.bin" not in corpus
    assert "and 30 more" in corpus


def test_resumed_run_plots_each_step_once(full_workdir: Path, build) -> None:
    """A resumed run's repeated steps are shown once, with the values of the run that went on."""
    lines = metrics_lines(steps=60)
    resumed = [dict(p, loss=p["loss"] - 1.0) if "loss" in p else p for p in lines if 40 <= p["step"] <= 60]
    write_jsonl(full_workdir / "run" / "metrics.jsonl", lines + resumed)
    training = section(build(full_workdir), "training")
    assert "train loss at step 60" in training
    assert "3.000" in training  # the resumed run's last loss (4.0 - 1.0), not the first run's


def test_mlm_samples_show_text_answer_and_predictions(full_workdir: Path, build) -> None:
    """Masked-LM samples show the masked text, the answer and the predictions, the right one marked."""
    evaluation = eval_json()
    evaluation["objective"] = "mlm"
    evaluation["sets"]["heldout"]["trained"]["masked_accuracy"] = 0.4213
    evaluation["samples"] = [{"text": "Hold [MASK] for five seconds.", "answer": "RESET", "predictions": ["RESET", "<b>"]}]
    write_json(full_workdir / "eval.json", evaluation)
    page = build(full_workdir)
    samples = section(page, "samples")
    assert "Hold [MASK] for five seconds." in samples
    assert '<span class="badge good"><code>RESET</code></span>' in samples
    assert "<code>&lt;b&gt;</code>" in samples
    evaluation_html = section(page, "evaluation")
    assert "masked language model" in evaluation_html and "42.1%" in evaluation_html


def test_adapted_model_is_compared_with_base_and_unigram(full_workdir: Path, build) -> None:
    """With a base model evaluated too, each set compares the adapted model with base and with unigram."""
    evaluation = eval_json()
    evaluation["sets"] = {
        "heldout": {"base": {"bits_per_byte": 1.0}, "adapted": {"bits_per_byte": 0.8}, "unigram": {"bits_per_byte": 2.0}},
        "general": {"base": {"bits_per_byte": 1.0}, "adapted": {"bits_per_byte": 1.05}},
    }
    write_json(full_workdir / "eval.json", evaluation)
    evaluation_html = section(build(full_workdir), "evaluation")
    assert "\u221220% bits per byte vs base" in evaluation_html
    assert "\u221260% bits per byte vs unigram" in evaluation_html
    assert '<span class="badge bad">+5.0% bits per byte vs base</span>' in evaluation_html


def test_diverged_run_with_non_finite_metrics_still_plots(full_workdir: Path, build) -> None:
    """NaN, infinite, huge or non-numeric metric values (a diverged run) leave gaps in the curves, not errors."""
    (full_workdir / "run" / "metrics.jsonl").write_text(
        '{"step": 1, "loss": NaN, "lr": 0.001, "tokens_per_s": Infinity}\n'
        '{"step": 2, "loss": 1e308, "lr": null, "tokens_per_s": "fast"}\n'
        '{"step": 3, "loss": 2.0, "lr": 0.001, "tokens_per_s": 100.0}\n'
        '{"step": 3, "val_loss": NaN, "tokens": 12}\n'
    )
    training = section(build(full_workdir), "training")
    assert len(PNG_URI.findall(training)) == 3
    assert "not available" not in training
