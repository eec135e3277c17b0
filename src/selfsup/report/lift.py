"""The lift section: did continued training help on the domain, and what did it cost elsewhere?

With `[model] base` this is the page's first section: the base and the adapted model side by side
on every text set (bits per byte, perplexity, masked accuracy), the domain gain and the
forgetting in words, infill examples (fim), cloze probes with examples, the tokenizer's fertility, and the trade-off
plot of domain and general bits per byte over training. A from-scratch run gets the same parts
that apply (cloze, fertility, plot) lower on the page, and keeps its opening as it was.

Reads eval.json's `lift`, `cloze`, `fertility` and `sets` (see evaluation/evaluate.py) and the
`domain_bpb` / `general_bpb` lines of metrics.jsonl; every part may be missing on its own.
"""

from __future__ import annotations

from typing import Any

from selfsup.report.formatting import DASH, fmt_change, fmt_float, fmt_int, fmt_pct, fmt_sig, is_number
from selfsup.report.inputs import ReportInputs

# Metrics shown base vs adapted where a set has them: (key, format, lower is better). The infill
# rows come from fim / span on a decoder; their base is scored as training started (eval.json).
SIDE_BY_SIDE = (
    ("bits_per_byte", fmt_float, True), ("perplexity", fmt_sig, True), ("masked_accuracy", fmt_pct, False),
    ("fim_middle_bits_per_byte", fmt_float, True), ("fim_token_accuracy", fmt_pct, False),
    ("fim_exact_match", fmt_pct, False), ("span_bits_per_byte", fmt_float, True), ("span_exact_match", fmt_pct, False),
)
TOKENIZER_LABELS = {
    "base": "base model's tokenizer (reused)",
    "adapted": "adapted tokenizer (base + added tokens: domain terms, objective sentinels)",
    "domain": "byte-level BPE trained on the domain",
}
CLOZE_LABELS = {"base": "base model", "trained": "adapted model", "chance": "chance"}
KIND_LABELS = {"term": "a specific domain term in a held-out sentence", "definition": "the term a sentence defines",
               "default": "a setting's default value", "signature": "the function a call or signature names"}


def lift_section(inputs: ReportInputs) -> dict[str, Any]:
    """{"has_base", "sentences", "rows", "cloze", "fertility", "plot"}; empty parts are None."""
    evaluation = inputs.eval.value or {}
    lift = _dict(evaluation.get("lift"))
    has_base = bool(lift.get("base"))
    subject = "adapted" if has_base else "trained"
    out: dict[str, Any] = {
        "has_base": has_base,
        "base": lift.get("base"),
        "base_cached": bool(lift.get("base_cached")),
        "sentences": lift_sentences(lift) if has_base else [],
        "rows": side_by_side_rows(_dict(evaluation.get("sets")), lift) if has_base else [],
        "cloze": cloze_part(_dict(evaluation.get("cloze")), subject),
        "infill": infill_part(evaluation.get("infill_examples"), subject),
        "fertility": fertility_part(_dict(evaluation.get("fertility"))),
        "plot": _tradeoff_plot(inputs),
    }
    out["empty"] = not (out["rows"] or out["cloze"] or out["infill"] or out["fertility"] or out["plot"])
    return out


def lift_sentences(lift: dict[str, Any]) -> list[str]:
    """The domain gain and the general change in words: "general text (kjv) got 2.1% worse (…)"."""
    sentences = []
    domain = _dict(lift.get("domain"))
    if is_number(domain.get("change")):
        sentences.append(f"Held-out domain text {_moved(domain['change'])} "
                         f"({fmt_float(domain['base'])} → {fmt_float(domain['adapted'])} bits per byte).")
    for g in lift.get("general") or []:
        g = _dict(g)
        if is_number(g.get("change")):
            sentences.append(f"General text ({g.get('set')}) {_moved(g['change'])} "
                             f"({fmt_float(g['base'])} → {fmt_float(g['adapted'])} bits per byte).")
    if is_number(lift.get("forgetting")):
        f = lift["forgetting"]
        sentences.append("Forgetting: none measurable, general text did not get worse." if f <= 0.0005 else
                         f"Forgetting: general text got {fmt_change(f).lstrip('+')} worse on average.")
    elif not lift.get("general"):
        sentences.append("No general text set was evaluated, so forgetting is not measured: "
                         "name some under [eval] texts.")
    return sentences


def side_by_side_rows(sets: dict[str, Any], lift: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per text set: base, adapted and the change, for bits per byte, perplexity, masked accuracy,
    and the infill metrics of fim / span where the set has them."""
    general = {_dict(g).get("set") for g in lift.get("general") or []}
    rows = []
    for name, models in sorted(sets.items(), key=lambda kv: kv[0] != "heldout"):  # the domain first
        models = _dict(models)
        base, adapted = _dict(models.get("base")), _dict(models.get("trained") or models.get("adapted"))
        if not base or not adapted:
            continue
        kind = "domain (held-out)" if name == "heldout" else ("general" if name in general else "")
        row = {"set": str(name), "kind": kind, "cells": []}
        for key, fmt, lower_is_better in SIDE_BY_SIDE:
            b, a = base.get(key), adapted.get(key)
            if not is_number(b) and not is_number(a):
                continue
            change = (a - b) / b if is_number(a) and is_number(b) and b else None
            row["cells"].append({
                "metric": key, "base": fmt(b), "adapted": fmt(a),
                "change": fmt_change(change) if change is not None else DASH,
                "better": None if change is None else (change < 0) == lower_is_better,
            })
        rows.append(row)
    return rows


def cloze_part(cloze: dict[str, Any], subject: str) -> dict[str, Any] | None:
    models = _dict(cloze.get("models"))
    if not cloze.get("probes") or not models:
        return None
    order = [m for m in ("base", "trained", "chance") if m in models]
    rows = [{"model": CLOZE_LABELS.get(m, m) if m != "trained" else f"{subject} model",
             "top1": fmt_pct(_dict(models[m]).get("top1")), "mrr": fmt_float(_dict(models[m]).get("mrr")),
             "subject": m == "trained"} for m in order]
    kinds = []
    for kind, by_model in _dict(cloze.get("kinds")).items():
        by_model = _dict(by_model)
        kinds.append({"kind": KIND_LABELS.get(kind, kind), "probes": fmt_int(_dict(by_model.get("chance")).get("probes")),
                      "top1": [fmt_pct(_dict(by_model.get(m)).get("top1")) for m in order]})
    examples = []
    for ex in cloze.get("examples") or []:
        ex = _dict(ex)
        picks = _dict(ex.get("picks"))
        examples.append({
            "kind": KIND_LABELS.get(ex.get("kind", "term"), ex.get("kind")),
            "text": str(ex.get("text", "")), "answer": str(ex.get("answer", "")),
            "candidates": [str(c) for c in ex.get("candidates") or []],
            "picks": [{"model": CLOZE_LABELS.get(m, m) if m != "trained" else f"{subject} model", "pick": str(p),
                       "correct": p == ex.get("answer")} for m, p in sorted(picks.items(), key=lambda kv: kv[0] != "base")],
        })
    return {"probes": fmt_int(cloze.get("probes")), "candidates": fmt_int(cloze.get("candidates")),
            "rows": rows, "examples": examples, "kinds": kinds if len(kinds) > 1 else [],
            "models": [r["model"] for r in rows]}


def infill_part(examples: Any, subject: str) -> list[dict[str, Any]]:
    """Held-out lines hidden and filled in by each model (evaluation/infill.py fim_examples), the base first."""
    labels = {"base": "base model (as training started)", "trained": f"{subject} model"}
    out = []
    for ex in examples if isinstance(examples, list) else []:
        ex = _dict(ex)
        fills = sorted(_dict(ex.get("fills")).items(), key=lambda kv: kv[0] != "base")
        out.append({"before": str(ex.get("before", "")), "after": str(ex.get("after", "")), "answer": str(ex.get("answer", "")),
                    "fills": [{"model": labels.get(m, m), "text": str(_dict(f).get("text", "")), "exact": bool(_dict(f).get("exact"))}
                              for m, f in fills]})
    return out


def fertility_part(fertility: dict[str, Any]) -> dict[str, Any] | None:
    tokenizers = _dict(fertility.get("tokenizers"))
    if not tokenizers:
        return None
    rows = [{"tokenizer": TOKENIZER_LABELS.get(name, name), "vocab": fmt_int(_dict(f).get("vocab_size")),
             "tokens_per_word": fmt_float(_dict(f).get("tokens_per_word"), 2),
             "bytes_per_token": fmt_float(_dict(f).get("bytes_per_token"), 2)}
            for name, f in tokenizers.items()]
    texts = str(fertility.get("texts") or "heldout")
    return {"rows": rows, "texts": "held-out domain" if texts == "heldout" else texts}


def _tradeoff_plot(inputs: ReportInputs) -> str | None:
    metrics = inputs.metrics.value
    if metrics is None or not metrics.tradeoff:
        return None
    from selfsup.report import plots  # matplotlib is imported only when a page is made

    png = plots.tradeoff_png(metrics.tradeoff)
    return plots.data_uri(png) if png else None


def _moved(change: float) -> str:
    if abs(change) < 0.0005:
        return "did not change"
    return f"got {fmt_change(change).lstrip('+').replace(chr(0x2212), '')} {'better' if change < 0 else 'worse'}"


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}
