"""The lift section: base vs adapted first on the page, forgetting in words, cloze and fertility tables."""

from __future__ import annotations

import html
import re
from pathlib import Path

from report_fixtures import eval_json, metrics_lines, write_json, write_jsonl

from selfsup.report.lift import lift_sentences, side_by_side_rows


def scores(bpb: float) -> dict:
    return {"loss": bpb * 2, "perplexity": 2.718 ** (bpb * 2), "bits_per_byte": bpb, "tokens": 100, "bytes": 300}


def with_base() -> dict:
    ev = eval_json()
    ev["sets"]["heldout"]["base"] = scores(2.0)
    ev["sets"]["heldout"]["trained"] = scores(1.6)
    ev["sets"]["kjv"] = {"trained": scores(1.02), "unigram": scores(3.0), "base": scores(1.0)}
    ev["lift"] = {"base": "/models/smol", "base_cached": True,
                  "domain": {"set": "heldout", "base": 2.0, "adapted": 1.6, "change": -0.2},
                  "general": [{"set": "kjv", "base": 1.0, "adapted": 1.02, "change": 0.02}], "forgetting": 0.02}
    ev["cloze"] = {"probes": 2, "candidates": 3,
                   "models": {"trained": {"top1": 1.0, "mrr": 1.0}, "base": {"top1": 0.5, "mrr": 0.667},
                              "chance": {"top1": 1 / 3, "mrr": 0.611}},
                   "examples": [{"text": "Run ____ <now>", "answer": "VACUUM", "candidates": ["VACUUM", "x", "y"],
                                 "picks": {"trained": "VACUUM", "base": "x"}, "ranks": {"trained": 1, "base": 2}}]}
    ev["fertility"] = {"texts": "heldout", "tokenizers": {
        "base": {"tokens_per_word": 1.9, "bytes_per_token": 3.1, "vocab_size": 49152},
        "domain": {"tokens_per_word": 1.4, "bytes_per_token": 4.2, "vocab_size": 49152}}}
    return ev


def lift_html(page: str) -> str:
    match = re.search(r'<section id="lift">(.*?)</section>', page, re.S)
    assert match, "no lift section"
    return match.group(1)


def test_lift_is_the_first_section_with_both_models_and_forgetting_in_words(full_workdir: Path, build) -> None:
    """With a base, the page opens on the lift: both models' figures per set (domain first), the
    domain gain and the general change in words, cloze accuracy with escaped examples, fertility,
    and the trade-off plot from metrics.jsonl."""
    write_json(full_workdir / "eval.json", with_base())
    lines = metrics_lines()
    lines.append({"step": 0, "tokens": 0, "domain_bpb": 2.0, "general_bpb": 1.0})
    lines += [{"step": s, "val_loss": 5.0, "domain_bpb": 2.0 - s / 100, "general_bpb": 1.0 + s / 1000} for s in (20, 40)]
    write_jsonl(full_workdir / "run" / "metrics.jsonl", lines)
    page = build(full_workdir)
    assert page.index('<section id="lift">') < page.index('<section id="training">')
    lift = lift_html(page)
    assert "Held-out domain text got 20% better (2.000 → 1.600 bits per byte)" in lift
    assert "General text (kjv) got 2.0% worse (1.000 → 1.020 bits per byte)" in lift
    assert lift.index("<td>heldout") < lift.index("<td>kjv")  # table rows: the domain first
    assert "\u221220%" in lift and "+2.0%" in lift
    assert "100.0%" in lift and "50.0%" in lift  # cloze top-1, adapted and base
    assert html.escape("Run ____ <now>") in lift and "<now>" not in lift
    assert "4.20" in lift and "1.90" in lift  # fertility
    assert "kept from an earlier evaluation" in lift
    assert lift.count("data:image/png") == 1


def test_from_scratch_run_keeps_its_opening_and_shows_no_lift(full_workdir: Path, build) -> None:
    """Without a base there is no base-vs-adapted section before training; with neither cloze nor
    fertility nor trade-off lines, no domain-knowledge section at all."""
    page = build(full_workdir)
    assert '<section id="lift">' not in page
    ev = eval_json()
    ev["fertility"] = {"texts": "heldout", "tokenizers": {"domain": {"tokens_per_word": 1.3, "bytes_per_token": 4.0}}}
    write_json(full_workdir / "eval.json", ev)
    page = build(full_workdir)
    assert page.index('<section id="evaluation">') < page.index('<section id="lift">')
    assert "Domain knowledge" in lift_html(page) and "Lift<" not in page


def test_forgetting_sentence_for_no_general_set_and_for_improvement() -> None:
    """No general set: the sentence says forgetting was not measured and how to measure it; a general
    set that got better reads 'none measurable'."""
    assert any("[eval] texts" in s for s in lift_sentences({"base": "b", "general": [], "forgetting": None}))
    better = lift_sentences({"base": "b", "general": [{"set": "g", "base": 1.0, "adapted": 0.9, "change": -0.1}],
                             "forgetting": -0.1})
    assert "General text (g) got 10% better (1.000 → 0.900 bits per byte)." in better
    assert "Forgetting: none measurable, general text did not get worse." in better


def test_infill_metrics_sit_beside_bits_per_byte_with_the_right_direction() -> None:
    """A fim / span run's held-out row also shows middle and span bits per byte (lower is better) and
    exact match / token accuracy (higher is better), base against adapted."""
    sets = {"heldout": {
        "base": {"bits_per_byte": 0.94, "fim_middle_bits_per_byte": 0.97, "fim_token_accuracy": 0.51, "fim_exact_match": 0.0,
                 "span_bits_per_byte": 1.91},
        "trained": {"bits_per_byte": 0.79, "fim_middle_bits_per_byte": 0.74, "fim_token_accuracy": 0.57, "fim_exact_match": 0.0,
                    "span_bits_per_byte": 1.64},
    }}
    cells = {c["metric"]: c for c in side_by_side_rows(sets, {})[0]["cells"]}
    assert list(cells) == ["bits_per_byte", "fim_middle_bits_per_byte", "fim_token_accuracy", "fim_exact_match", "span_bits_per_byte"]
    assert cells["fim_middle_bits_per_byte"]["better"] and cells["fim_token_accuracy"]["better"]
    assert cells["span_bits_per_byte"]["better"] and cells["fim_exact_match"]["better"] is None  # 0% → 0%: no change to judge


def test_infill_examples_show_the_hidden_line_and_each_models_fill_as_text(full_workdir: Path, build) -> None:
    """A fim run's lift section shows each example's surrounding text, the hidden line and what the base
    (first) and the adapted model wrote, an exact fill marked, all escaped."""
    ev = with_base()
    ev["infill_examples"] = [{"before": "PRAGMA x;\n", "after": "\nmore <b>text</b>", "answer": "SELECT 1;",
                              "fills": {"trained": {"text": "SELECT 1;", "exact": True},
                                        "base": {"text": "<script>x</script>", "exact": False}}}]
    write_json(full_workdir / "eval.json", ev)
    lift = lift_html(build(full_workdir))
    assert "Infill: a held-out line hidden" in lift and "[hidden line]" in lift
    assert "hidden line: <code>SELECT 1;</code>" in lift
    assert lift.index("base model (as training started)") < lift.index("adapted model, exact")
    assert html.escape("<script>x</script>") in lift and "<script>" not in lift and html.escape("<b>text</b>") in lift
