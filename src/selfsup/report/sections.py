"""What each part of the page says, worked out from the inputs; the template only lays it out.

Each `*_section` function returns a plain dict for the template. A section whose input is missing
carries `missing` (shown as "not available: …"). Inputs come from files other stages (or older
versions of them) wrote, so `guarded` turns an input of an unexpected shape into such a note too:
one odd file costs one section, never the page.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any, Callable

from selfsup.models.identity import short
from selfsup.report.formatting import (
    DASH,
    fmt_bytes,
    fmt_change,
    fmt_duration,
    fmt_float,
    fmt_int,
    fmt_pct,
    fmt_si,
    fmt_value,
    is_number,
    recipe_as_toml,
)
from selfsup.report.inputs import ReportInputs

SUBJECTS = ("trained", "adapted")  # the model this run produced, as eval.json names it
BASELINES = ("base", "unigram")  # what it is compared with, most telling first
OBJECTIVES = {"clm": "causal language model", "mlm": "masked language model"}
EVAL_COLUMNS = {  # known metrics first, in this order, with these headings; others follow as found
    "bits_per_byte": "bits / byte",
    "loss": "loss",
    "perplexity": "perplexity",
    "masked_accuracy": "masked accuracy",
    "tokens": "tokens",
    "bytes": "bytes",
    "documents": "documents",
}
MAX_SAMPLES = 24
MAX_SAMPLE_CHARS = 4000
MAX_REASON_ROWS = 30


def guarded(build: Callable[[ReportInputs], dict[str, Any]], inputs: ReportInputs, source: str) -> dict[str, Any]:
    """Run one section builder; an input of an unexpected shape becomes the section's note."""
    try:
        return build(inputs)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
        return {"missing": f"{source} has an unexpected shape ({type(exc).__name__}: {exc})"}


# ---------------------------------------------------------------- summary


def summary_section(inputs: ReportInputs) -> dict[str, Any]:
    """The opening paragraph and the key figures: what went in, what was trained, what it scored.

    run.json is the record of a finished run; while it is missing (a run still going, or killed),
    the last metrics line stands in for steps, tokens and throughput.
    """
    corpus = inputs.corpus.value or {}
    run = inputs.run.value or {}
    train_points = inputs.metrics.value.train if inputs.metrics.value else []
    last = train_points[-1] if train_points else {}
    rates = [p["tokens_per_s"] for p in train_points if _finite(p.get("tokens_per_s"))]
    figures = {
        "steps": _first_number(run.get("steps"), last.get("step")),
        "tokens": _first_number(run.get("tokens"), last.get("tokens")),
        "tokens_per_s": _first_number(run.get("tokens_per_s"), statistics.median(rates) if rates else None),
    }
    headline = _headline_comparison(inputs)

    sentences = [s for s in (_corpus_sentence(corpus), _training_sentence(run, figures, bool(train_points), inputs.lineage.value),
                             _eval_sentence(headline)) if s]
    if not sentences:
        sentences.append("Nothing to report yet: this work directory holds no corpus, training run or evaluation.")

    cards = [
        {"label": "documents", "value": fmt_si(corpus.get("documents"))},
        {"label": "parameters", "value": fmt_si(run.get("parameters"))},
        {"label": "steps", "value": fmt_int(figures["steps"])},
        {"label": "tokens trained", "value": fmt_si(figures["tokens"])},
        {"label": "tokens / s", "value": fmt_si(figures["tokens_per_s"])},
    ]
    if headline:
        card = {"label": f"{headline['set']} bits / byte", "value": headline["bpb"]}
        if headline["against"]:
            first = headline["against"][0]
            card |= {"note": f"{first['change']} vs {first['baseline']}", "tone": "good" if first["better"] else "bad"}
        cards.append(card)
    return {"sentences": sentences, "cards": [c for c in cards if c["value"] != DASH]}


def _corpus_sentence(corpus: dict[str, Any]) -> str | None:
    if not corpus:
        return None
    text = f"The corpus holds {fmt_int(corpus.get('documents'))} documents"
    if is_number(corpus.get("bytes")):
        text += f" ({fmt_bytes(corpus['bytes'])} of text)"
    if is_number(corpus.get("files_seen")):
        not_ingested = sum(v for k, v in _counts(corpus.get("audit")).items() if k != "ingested")
        text += f" from {fmt_int(corpus['files_seen'])} files; {fmt_int(not_ingested)} were dropped or duplicates"
    return text + "."


def _training_sentence(run: dict[str, Any], figures: dict[str, Any], has_metrics: bool,
                       lineage: dict[str, Any] | None = None) -> str | None:
    if not run and not has_metrics:
        return None
    objective = OBJECTIVES.get(str(run.get("objective")), "model")
    size = f"{fmt_si(run['parameters'])}-parameter " if is_number(run.get("parameters")) else ""
    text = f"A {size}{objective}"
    if run.get("preset"):
        text += f" (preset {run['preset']})"
    named = _dict(_dict(lineage).get("base"))
    base = _dict(_dict(run.get("recipe")).get("model")).get("base")
    if named.get("name"):  # the base as the recipe named it (a GGUF file, not WORKDIR/base), with its fingerprint
        text += f" was continued from the base {named['name']} ({short(named.get('fingerprint'))})"
    else:
        text += f" was continued from {base}" if base else " was trained"
    if figures["steps"] is not None:
        text += f" for {fmt_int(figures['steps'])} steps"
    if figures["tokens"] is not None:
        text += f" over {fmt_si(figures['tokens'])} tokens"
    if figures["tokens_per_s"] is not None:
        text += f" at {fmt_int(figures['tokens_per_s'])} tokens/s"
    if run.get("device"):
        text += f" on {run['device']}"
    return text + "."


def _eval_sentence(headline: dict[str, Any] | None) -> str | None:
    if not headline:
        return None
    text = f"On {headline['set']} text it scores {headline['bpb']} bits per byte"
    if headline["against"]:
        text += ", " + ", ".join(f"{c['change']} vs {c['baseline']}" for c in headline["against"])
    return text + "."


def _headline_comparison(inputs: ReportInputs) -> dict[str, Any] | None:
    try:
        comparisons = compare_models(inputs.eval.value or {})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not comparisons:
        return None
    by_set = {c["set"]: c for c in comparisons}
    return by_set.get("heldout") or next((c for name, c in by_set.items() if "held" in name), comparisons[0])


# ---------------------------------------------------------------- training


def training_section(inputs: ReportInputs) -> dict[str, Any]:
    """Facts of the run (run.json) and its curves (metrics.jsonl); either may be missing alone."""
    out: dict[str, Any] = {"run_missing": inputs.run.missing, "metrics_missing": inputs.metrics.missing}
    run = inputs.run.value or {}
    facts = [
        ("objective", OBJECTIVES.get(str(run.get("objective")), run.get("objective"))),
        ("preset", run.get("preset")),
        ("parameters", fmt_int(run.get("parameters"))),
        ("precision", run.get("precision")),
        ("torch.compile", fmt_value("compile", run.get("compile"))),
        ("device", run.get("device")),
        ("steps", fmt_int(run.get("steps"))),
        ("tokens", fmt_int(run.get("tokens"))),
        ("wall time", fmt_duration(run.get("elapsed_s"))),
        ("tokens / s", fmt_int(run.get("tokens_per_s"))),
        ("MFU", fmt_pct(run.get("mfu")) if run.get("mfu") is not None else "not measured"),
        ("peak learning rate", _peak_lr_fact(run)),
        ("schedule", _schedule_fact(run)),
        ("stopped by", run.get("stopped_by")),
        ("data selection", _selection_fact(run)),
    ]
    out["facts"] = [(k, v) for k, v in facts if v not in (None, "", DASH)] if run else []

    metrics = inputs.metrics.value
    out["curves"] = {}
    out["metric_facts"] = []
    out["notes"] = []
    if metrics is not None:
        try:
            out["curves"] = _curves(metrics.train, metrics.validation)
        except Exception as exc:  # noqa: BLE001 - a plotting failure costs the curves, not the page
            out["notes"].append(f"The curves could not be drawn ({type(exc).__name__}: {exc}).")
        facts = out["metric_facts"]
        if metrics.train:
            last = metrics.train[-1]
            facts.append((f"train loss at step {fmt_int(last['step'])}", fmt_float(last.get("loss"))))
        if metrics.validation:
            last = metrics.validation[-1]
            facts.append((f"validation loss at step {fmt_int(last['step'])}", fmt_float(last.get("val_loss"))))
            finite = [p for p in metrics.validation if _finite(p.get("val_loss"))]
            if finite:
                best = min(finite, key=lambda p: p["val_loss"])
                facts.append((f"best validation loss (step {fmt_int(best['step'])})", fmt_float(best["val_loss"])))
        if metrics.skipped_lines:
            n = metrics.skipped_lines
            out["notes"].append(
                f"{n} unreadable line{'s' if n != 1 else ''} in run/metrics.jsonl skipped "
                "(a run killed while writing leaves a truncated last line)."
            )
    return out


def _peak_lr_fact(run: dict[str, Any]) -> str | None:
    """The peak rate, and for lr = "auto" each candidate's short-test scores and why one was chosen."""
    lr, search = run.get("lr"), _dict(run.get("lr_search"))
    if not _finite(lr):
        return None
    if not search:
        return f"{lr:g}"
    tried = "; ".join(
        f"{c.get('lr'):g}: domain {fmt_float(c.get('domain_bpb'))}, general {fmt_float(c.get('general_bpb'))} bits/byte"
        for c in search.get("candidates", []) if _finite(c.get("lr"))
    )
    return f"{lr:g}, chosen by lr = \"auto\" ({search.get('reason', '')}) from {tried}"


def _selection_fact(run: dict[str, Any]) -> str | None:
    """[train] select: what the base scored, what was left out and why, and what the run trained on."""
    sel = _dict(run.get("selection"))
    if not sel:
        return None
    where = "the scored blocks that passed" if sel.get("only_scored") else "every block but those left out"
    return (f"the base scored {fmt_int(sel.get('scored'))} of {fmt_int(sel.get('blocks'))} blocks "
            f"({fmt_duration(sel.get('seconds'))}, first {fmt_int(sel.get('score_tokens'))} tokens each); left out "
            f"{fmt_int(sel.get('left_out_known'))} it already predicts (below {fmt_float(sel.get('known_below_bpb'))} "
            f"bits/byte) and {fmt_int(sel.get('left_out_random'))} near random (above "
            f"{fmt_float(sel.get('random_above_bpb'))}); trained on {where}: {fmt_int(sel.get('kept'))} blocks")


def _schedule_fact(run: dict[str, Any]) -> str | None:
    """The schedule and, for a time budget, the step count planned from the first steps' times."""
    if not run.get("schedule"):
        return None
    plan = _dict(run.get("time_plan"))
    if not plan:
        return str(run["schedule"])
    again = f", re-planned {plan['replans']}x from the pace of later steps" if plan.get("replans") else ""
    return (f"{run['schedule']}, {fmt_int(plan.get('total_steps'))} steps planned for {plan.get('budget_minutes'):g} "
            f"minutes at step {fmt_int(plan.get('planned_at_step'))} ({fmt_float(plan.get('step_seconds'))} s a step{again})")


def _curves(train: list[dict[str, Any]], validation: list[dict[str, Any]]) -> dict[str, str | None]:
    from selfsup.report import plots  # matplotlib takes ~0.6 s to import: only when a page is made

    pngs = {
        "loss": plots.loss_curve_png(train, validation),
        "lr": plots.lr_curve_png(train),
        "throughput": plots.throughput_png(train),
    }
    return {name: plots.data_uri(png) if png else None for name, png in pngs.items()}


# ---------------------------------------------------------------- evaluation


def compare_models(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Per text set: the trained model's bits per byte and its relative change vs each baseline."""
    out = []
    for set_name, models in _dict(evaluation.get("sets")).items():
        models = _dict(models)
        subject = next((m for m in SUBJECTS if m in models), None)
        if subject is None or not is_number(_dict(models[subject]).get("bits_per_byte")):
            continue
        bpb = models[subject]["bits_per_byte"]
        against = []
        for baseline in BASELINES:
            other = _dict(models.get(baseline)).get("bits_per_byte")
            if baseline != subject and is_number(other) and other > 0:
                ratio = (bpb - other) / other
                against.append({"baseline": baseline, "bpb": fmt_float(other), "change": fmt_change(ratio),
                                "better": ratio < 0})
        out.append({"set": str(set_name), "model": subject, "bpb": fmt_float(bpb), "against": against})
    return out


def evaluation_section(inputs: ReportInputs) -> dict[str, Any]:
    """All sets × all models in one table, plus the headline comparisons."""
    if inputs.eval.value is None:
        return {"missing": inputs.eval.missing}
    evaluation = inputs.eval.value
    sets = _dict(evaluation.get("sets"))
    if not sets:
        return {"missing": "eval.json has no evaluated text sets"}
    columns: dict[str, str] = {}
    for models in sets.values():
        for metrics in _dict(models).values():
            for key, value in _dict(metrics).items():
                if is_number(value) or value is None:
                    columns.setdefault(key, EVAL_COLUMNS.get(key, key.replace("_", " ")))
    order = [k for k in EVAL_COLUMNS if k in columns] + [k for k in columns if k not in EVAL_COLUMNS]
    rows = []
    for set_name, models in sets.items():
        models = _dict(models)
        subject = next((m for m in SUBJECTS if m in models), None)
        for i, (model_name, metrics) in enumerate(models.items()):
            metrics = _dict(metrics)
            rows.append({
                "set": str(set_name) if i == 0 else "",
                "group_start": i == 0,
                "model": str(model_name),
                "subject": model_name == subject,
                "cells": [fmt_value(k, metrics.get(k)) for k in order],
            })
    return {
        "objective": OBJECTIVES.get(str(evaluation.get("objective")), evaluation.get("objective")),
        "columns": [columns[k] for k in order],
        "rows": rows,
        "comparisons": compare_models(evaluation),
    }


def samples_section(inputs: ReportInputs) -> dict[str, Any]:
    """Generated continuations (clm) or filled-in masks (mlm), as the eval stage recorded them."""
    if inputs.eval.value is None:
        return {"missing": inputs.eval.missing}
    samples = inputs.eval.value.get("samples")
    if not isinstance(samples, list) or not samples:
        return {"missing": "eval.json has no samples (set [eval] samples above 0 to record some)"}
    items = []
    for sample in samples[:MAX_SAMPLES]:
        if isinstance(sample, dict) and "prompt" in sample:
            items.append({
                "kind": "clm",
                "prompt": _clip(sample.get("prompt")),
                "completion": _clip(sample.get("completion")),
                "reference": _clip(sample.get("reference")) if sample.get("reference") else None,
            })
        elif isinstance(sample, dict) and "text" in sample:
            answer = sample.get("answer")
            predictions = sample.get("predictions") if isinstance(sample.get("predictions"), list) else []
            items.append({
                "kind": "mlm",
                "text": _clip(sample.get("text")),
                "answer": _clip(answer) if answer is not None else None,
                "predictions": [{"text": _clip(p), "correct": answer is not None and p == answer}
                                for p in predictions],
            })
        else:
            shown = json.dumps(sample, indent=2, ensure_ascii=False, default=str)
            items.append({"kind": "other", "text": _clip(shown)})
    return {"items": items, "more": max(0, len(samples) - MAX_SAMPLES)}


# ---------------------------------------------------------------- corpus and tokens


def corpus_section(inputs: ReportInputs) -> dict[str, Any]:
    """What came in, what was kept, what was dropped and why (the audit), and the token shards."""
    corpus = inputs.corpus.value
    audit = inputs.audit.value
    out: dict[str, Any] = {"missing": inputs.corpus.missing, "facts": []}
    if corpus is not None:
        train, val = corpus.get("train_documents"), corpus.get("validation_documents")
        docs = fmt_int(corpus.get("documents"))
        if is_number(train) and is_number(val):
            docs += f" ({fmt_int(train)} train, {fmt_int(val)} validation)"
        out["facts"] = [
            ("files seen", fmt_int(corpus.get("files_seen"))),
            ("documents", docs),
            ("characters", fmt_int(corpus.get("characters"))),
            ("text size", fmt_bytes(corpus.get("bytes"))),
            ("encodings", fmt_value("encodings", corpus.get("encodings"))),
        ]
        # The figures `selfsup ingest` prints at its end (ingest.summary), where the manifest has them.
        if "duplicates" in corpus or "near_duplicates" in corpus:
            out["facts"].append(("duplicates", f"{fmt_int(corpus.get('duplicates'))} exact, {fmt_int(corpus.get('near_duplicates'))} near"))
        if "pii" in corpus:
            out["facts"].append(("PII replaced", fmt_value("pii", corpus.get("pii") or None)))
        if corpus.get("languages"):
            out["facts"].append(("languages", fmt_value("languages", corpus["languages"])))
        formats = corpus.get("formats")
        if isinstance(formats, dict) and formats:
            out["facts"].append(("by format", "; ".join(
                f"{name}: {fmt_int(c.get('files'))} files, {fmt_bytes(c.get('bytes'))}, {fmt_int(c.get('documents', 0))} documents"
                for name, c in formats.items() if isinstance(c, dict)
            )))  # fmt: skip
        if "files_extracted" in corpus:
            out["facts"].append(("extraction", f"{fmt_int(corpus.get('files_extracted'))} files extracted, "
                                               f"{fmt_int(corpus.get('files_reused'))} unchanged (reused)"))  # fmt: skip
        if is_number(corpus.get("seconds")):
            out["facts"].append(("ingest time", fmt_duration(corpus["seconds"])))
        out["sources"] = [str(s) for s in corpus.get("sources") or []]
    else:
        out["sources"] = []

    # Counts come from the manifest; the audit (one line per file) stands in when it is missing.
    by_status = _counts(corpus.get("audit")) if corpus else {}
    by_reason = _counts(corpus.get("dropped")) if corpus else {}
    if not by_status and audit is not None:
        by_status = audit.by_status
    if not by_reason and audit is not None:
        by_reason = audit.by_reason
    total = sum(by_status.values())
    out["status_rows"] = [
        {"status": s, "files": fmt_int(n), "share": fmt_pct(n / total) if total else DASH}
        for s, n in sorted(by_status.items(), key=lambda kv: (kv[0] != "ingested", -kv[1]))
    ]
    reasons = sorted(by_reason.items(), key=lambda kv: -kv[1])
    if len(reasons) > MAX_REASON_ROWS:
        rest = sum(n for _, n in reasons[MAX_REASON_ROWS - 1:])
        reasons = reasons[: MAX_REASON_ROWS - 1] + [(f"{len(by_reason) - MAX_REASON_ROWS + 1} other reasons", rest)]
    out["reason_rows"] = [{"reason": r, "files": fmt_int(n)} for r, n in reasons]

    out["audit_missing"] = inputs.audit.missing
    out["audit_rows"] = []
    out["audit_more"] = 0
    out["audit_doc_ids"] = False
    if audit is not None:
        out["audit_rows"] = [
            {"path": str(r.get("path", DASH)), "status": str(r.get("status", DASH)),
             "reason": str(r.get("reason") or DASH), "doc_id": str(r.get("doc_id") or "")}
            for r in audit.rows
        ]
        out["audit_more"] = fmt_int(audit.more) if audit.more else 0
        out["audit_doc_ids"] = any(r["doc_id"] for r in out["audit_rows"])
    out["shards"] = guarded(shards_part, inputs, "shards/index.json or shards/manifest.json")
    return out


def shards_part(inputs: ReportInputs) -> dict[str, Any]:
    """Token counts per split (shards/index.json), and the shard manifest's totals."""
    index = inputs.shards_index.value
    manifest = inputs.shards_manifest.value
    if index is None and manifest is None:
        return {"missing": inputs.shards_index.missing}
    facts = []
    if index is not None:
        for key in ("seq_len", "dtype", "vocab_size"):
            if key in index:
                facts.append((key.replace("_", " "), fmt_value(key, index[key])))
    splits = _dict((index or {}).get("splits")) or _dict((manifest or {}).get("splits"))
    if manifest is not None:
        for key, value in manifest.items():
            if is_number(value):
                facts.append((key.replace("_", " "), fmt_value(key, value)))
        files = _dict(manifest.get("files"))
        if files:
            size = sum(m.get("bytes", 0) for m in files.values() if isinstance(m, dict) and is_number(m.get("bytes")))
            facts.append(("files", f"{fmt_int(len(files))} ({fmt_bytes(size)})"))
    columns: list[str] = []
    for info in splits.values():
        for key, value in _dict(info).items():
            if (is_number(value) or value is None) and key not in columns:
                columns.append(key)
    rows = [{"split": str(name), "cells": [fmt_value(c, _dict(info).get(c)) for c in columns]}
            for name, info in splits.items()]
    return {"facts": facts, "columns": [c.replace("_", " ") for c in columns], "rows": rows}


# ---------------------------------------------------------------- recipe


def recipe_section(inputs: ReportInputs) -> dict[str, Any]:
    if inputs.run.value is None:
        return {"missing": inputs.run.missing}
    recipe = inputs.run.value.get("recipe")
    if not isinstance(recipe, dict) or not recipe:
        return {"missing": "run/run.json does not record its recipe"}
    return {"toml": recipe_as_toml(recipe)}


# ---------------------------------------------------------------- helpers


def _finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _first_number(*values: Any) -> float | int | None:
    return next((v for v in values if _finite(v)), None)


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _counts(value: Any) -> dict[str, int]:
    return {str(k): v for k, v in _dict(value).items() if is_number(v)}


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[:MAX_SAMPLE_CHARS] + " … [clipped]"
