"""The retrieval section: do the queries a person would type find their passage, before and after?

For embedding objectives (contrastive, tsdae) this is the page's first section: every model
(the adapted or trained one, the base or the untrained one, BM25) on the held-out questions,
overall and per kind of question (heading → section, first sentence → rest, inverse cloze), and
one question of each kind with each model's top 3 passages. Reads eval.json's `sets.heldout`
and `retrieval_examples` (evaluation/retrieval.py).
"""

from __future__ import annotations

from typing import Any

from selfsup.report.formatting import DASH, fmt_float, fmt_pct, is_number
from selfsup.report.inputs import ReportInputs

KIND_LABELS = {"title": "heading → its section", "first_sentence": "first sentence → the rest",
               "ict": "a sentence → its passage"}
ORDER = ("trained", "untrained", "bm25")


def model_labels(has_base: bool) -> dict[str, str]:
    return {"trained": "adapted" if has_base else "trained", "untrained": "base" if has_base else "untrained",
            "bm25": "BM25 (no training)"}


def retrieval_section(inputs: ReportInputs) -> dict[str, Any]:
    """{"sentences", "rows", "kinds", "examples"}; {} when the run is not an embedding run."""
    evaluation = inputs.eval.value or {}
    models = _dict(_dict(evaluation.get("sets")).get("heldout"))
    if not is_number(_dict(models.get("trained")).get("mrr")):
        return {}
    labels = model_labels(has_base=bool(_dict(inputs.run.value).get("base")))  # run.json names the base it continued
    kinds = [k for k in KIND_LABELS if any(k in _dict(_dict(models.get(m)).get("kinds")) for m in ORDER)]
    rows = []
    for name in ORDER:
        m = _dict(models.get(name))
        if not m:
            continue
        per_kind = _dict(m.get("kinds"))
        rows.append({"model": labels[name], "subject": name == "trained", "mrr": fmt_float(m.get("mrr")),
                     "r1": fmt_pct(m.get("recall_at_1")), "r10": fmt_pct(m.get("recall_at_10")),
                     "kinds": [fmt_float(_dict(per_kind.get(k)).get("mrr")) if k in per_kind else DASH for k in kinds]})
    return {"sentences": _sentences(models, labels), "rows": rows, "kinds": [KIND_LABELS[k] for k in kinds],
            "queries": _dict(models.get("trained")).get("queries"), "passages": _dict(models.get("trained")).get("passages"),
            "examples": _examples(evaluation.get("retrieval_examples"), labels)}


def _sentences(models: dict[str, Any], labels: dict[str, str]) -> list[str]:
    trained = _dict(models.get("trained")).get("mrr")
    out = []
    for name in ("untrained", "bm25"):
        other = _dict(models.get(name)).get("mrr")
        if is_number(trained) and is_number(other) and other > 0:
            verdict = "better than" if trained > other else "not better than"
            out.append(f"MRR {trained:.3f} for the {labels['trained']} model, {verdict} {labels[name]} "
                       f"({other:.3f}, {100 * (trained / other - 1):+.0f}%).")
    return out


def _examples(examples: Any, labels: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for e in examples if isinstance(examples, list) else []:
        e = _dict(e)
        out.append({"kind": KIND_LABELS.get(e.get("kind"), e.get("kind")), "query": e.get("query"), "answer": e.get("answer"),
                    "models": [{"model": labels[n], "rank": _dict(e.get("ranks")).get(n), "top": _dict(e.get("top")).get(n) or []}
                               for n in ORDER if n in _dict(e.get("top"))]})
    return out


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}
