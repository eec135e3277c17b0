"""The comparison page: compare.html and compare.json, with the decision in words at the top.

`build_comparison(workdirs, out)` scores every model of the runs on the same evidence
(evaluation/compare.py) and writes:

- `compare.json`: `runs` (each work directory, its base, cost and origin), `models` (each model's
  `name`, `role` — base or adapted —, `run`, `runs`, `fingerprint` and `scores`), `evidence` (what
  was scored: documents, bytes, general sets, whether only the common documents were used),
  `changes` (per run with a base: adapted against base on the domain and on general text),
  `square` (the 2×2 of a rebase: old base, old adapted, new base, new adapted) and `decision`;
- `compare.html`: the same as one self-contained page, plus the domain / general curves of every run.

The decision is what a person asks after a new base ships: does the new base alone beat my
adapted old model, what does re-adapting it add, and what did it cost in general ability.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2

import selfsup
from selfsup.console import esc, say
from selfsup.errors import UsageError
from selfsup.evaluation.compare import (
    CompareModel,
    CompareRun,
    bits,
    collect_models,
    gather_evidence,
    load_runs,
    score_models,
)
from selfsup.manifest import write_json_atomic
from selfsup.models.identity import short
from selfsup.report.formatting import fmt_change, fmt_duration, fmt_int, fmt_si
from selfsup.report.inputs import read_metrics
from selfsup.report.plots import data_uri, runs_curves_png

FORGETTING_LIMIT = 0.02  # general text worse by more than this: the decision says so


def build_comparison(workdirs: list[Path], out: Path, *, common: bool = False, max_bytes: int | None = None,
                     cache_dir: Path | None = None) -> dict[str, Any]:
    """Score, decide, write compare.json beside `out` (compare.html); returns the JSON written."""
    if not workdirs:
        raise UsageError("give at least one work directory to compare")
    started = time.perf_counter()
    out = Path(out)
    runs = load_runs([Path(w) for w in workdirs])
    models = collect_models(runs)
    if not models:
        raise UsageError("none of the runs has a model to score yet; finish `selfsup run` first")
    evidence = gather_evidence(runs, common=common, max_bytes=max_bytes)
    first = runs[0].recipe
    results = score_models(models, evidence, seq_len=first.pack.seq_len, recipe=first,
                           cache_dir=cache_dir or out.parent / "compare-cache")
    general = [s.name for s in evidence.general]
    rows = [_model_row(m, results[m.fingerprint], runs) for m in models]
    changes = [c for c in (_run_change(r, models, results, general) for r in runs) if c]
    square = rebase_square(runs, models, results, general)
    payload = {
        "version": selfsup.__version__,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": [_run_row(r) for r in runs],
        "models": rows,
        "evidence": evidence.info,
        "general_sets": general,
        "changes": changes,
        "square": square,
        "decision": decide(rows, changes, square),
        "seconds": time.perf_counter() - started,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out.with_suffix(".json"), payload)
    _write_text(out, render(payload, runs))
    scored = sum(not r["cached"] for r in rows)
    say(f"[green]compared[/] {len(rows)} models of {len(runs)} runs ({scored} scored, {len(rows) - scored} from the cache): "
        f"{esc(out)}")
    return payload


def _model_row(m: CompareModel, result: dict[str, Any], runs: list[CompareRun]) -> dict[str, Any]:
    run = next(r for r in runs if r.name == m.runs[0])
    row = {"name": m.name, "role": m.role, "run": m.runs[0], "runs": m.runs, "path": str(m.path),
           "fingerprint": m.fingerprint, "objective": m.objective, "scores": result["scores"], "cached": result["cached"],
           "scoring_seconds": result["seconds"]}
    if m.role == "adapted":
        row["cost"] = run.cost()
    return row


def _run_row(r: CompareRun) -> dict[str, Any]:
    base = r.lineage.get("base") or {}
    return {"name": r.name, "workdir": str(r.workdir.resolve()), "objective": r.recipe.objective.label,
            "base": base.get("given") or (str(r.base_dir) if r.base_dir else None),
            "base_fingerprint": base.get("fingerprint"), "rebased_from": (r.rebase or {}).get("from"), "cost": r.cost()}


def _run_change(r: CompareRun, models: list[CompareModel], results, general: list[str]) -> dict[str, Any] | None:
    """Adapted against base for one run: relative change of bits per byte, domain and mean general."""
    base = next((m for m in models if m.role == "base" and r.name in m.runs), None)
    adapted = next((m for m in models if m.role == "adapted" and r.name in m.runs), None)
    if base is None or adapted is None:
        return None
    b, a = results[base.fingerprint]["scores"], results[adapted.fingerprint]["scores"]
    return {"run": r.name, "base": base.name, "adapted": adapted.name, "domain": _rel(bits(a, "heldout"), bits(b, "heldout")),
            "forgetting": _mean([_rel(bits(a, g), bits(b, g)) for g in general])}


def rebase_square(runs: list[CompareRun], models: list[CompareModel], results, general: list[str]) -> dict[str, Any] | None:
    """Old base, old adapted, new base, new adapted: for the first rebased run whose origin is compared."""
    by_dir = {r.workdir.resolve(): r for r in runs}
    for new in runs:
        origin = Path((new.rebase or {}).get("from", "")).resolve() if new.rebase else None
        old = by_dir.get(origin) if origin else None
        if old is None:
            continue
        cells = {}
        for label, run, role in (("old_base", old, "base"), ("old_adapted", old, "adapted"),
                                 ("new_base", new, "base"), ("new_adapted", new, "adapted")):
            m = next((m for m in models if m.role == role and run.name in m.runs), None)
            if m is None:
                break
            s = results[m.fingerprint]["scores"]
            cells[label] = {"name": m.name, "domain": bits(s, "heldout"),
                            "general": _mean([bits(s, g) for g in general]), "cost": run.cost() if role == "adapted" else None}
        else:
            return {"old_run": old.name, "new_run": new.name, **cells,
                    "new_forgetting": _mean([_rel(bits(results[_fp(models, new, "adapted")]["scores"], g),
                                                  bits(results[_fp(models, new, "base")]["scores"], g)) for g in general])}
    return None


def _fp(models: list[CompareModel], run: CompareRun, role: str) -> str:
    return next(m.fingerprint for m in models if m.role == role and run.name in m.runs)


# ---------------------------------------------------------------- the decision, in words


def decide(rows: list[dict[str, Any]], changes: list[dict[str, Any]], square: dict[str, Any] | None) -> list[str]:
    """A few sentences a person can act on: the rebase question first, then each run's lift, then the best model."""
    out = []
    if square and all(square[k]["domain"] is not None for k in ("old_base", "old_adapted", "new_base", "new_adapted")):
        nb, oa, na = square["new_base"]["domain"], square["old_adapted"]["domain"], square["new_adapted"]["domain"]
        verdict = "better than" if nb < oa else ("as good as" if nb == oa else "worse than")
        out.append(f"New base alone: {nb:.3f} bits/byte on your held-out documents, {verdict} your adapted old model ({oa:.3f}).")
        text = f"Re-adapting the new base: {na:.3f} ({fmt_change(na / nb - 1)})"
        text += f", {'better' if na < oa else 'not better'} than the adapted old model"
        if square.get("new_forgetting") is not None:
            text += f". Forgetting on general text: {fmt_change(square['new_forgetting'])}"
        out.append(text + ".")
    for c in changes:
        if square and c["run"] in (square["old_run"], square["new_run"]):
            continue
        if c["domain"] is None:
            continue
        text = f"{c['run']}: adapted {fmt_change(c['domain'])} bits/byte on the held-out documents against its base"
        if c["forgetting"] is not None:
            text += f", {fmt_change(c['forgetting'])} on general text"
            if c["forgetting"] > FORGETTING_LIMIT:
                text += " (more forgetting than the 2% a continued run should cost)"
        out.append(text + ".")
    ranked = sorted((r for r in rows if bits(r["scores"], "heldout") is not None), key=lambda r: bits(r["scores"], "heldout"))
    if ranked:
        best = ranked[0]
        out.append(f"Best on your held-out documents: {best['name']} ({bits(best['scores'], 'heldout'):.3f} bits/byte).")
    retrieval = sorted((r for r in rows if (r["scores"].get("retrieval") or {}).get("mrr") is not None),
                       key=lambda r: -r["scores"]["retrieval"]["mrr"])
    if retrieval:
        best = retrieval[0]
        out.append(f"Best retrieval on your held-out documents: {best['name']} (MRR {best['scores']['retrieval']['mrr']:.3f}, "
                   f"BM25 {best['scores']['retrieval']['bm25']['mrr']:.3f}).")
    return out or ["Nothing to decide yet: no model could be scored on the held-out documents."]


# ---------------------------------------------------------------- the page


def render(payload: dict[str, Any], runs: list[CompareRun]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    plot = curves_png(payload, runs)
    return env.from_string(PAGE).render(
        p=payload, columns=_columns(payload), rows=[_cells(r, payload) for r in payload["models"]],
        square=_square_cells(payload.get("square")), plot=data_uri(plot) if plot else None,
    )


def _columns(payload: dict[str, Any]) -> list[str]:
    cols = ["held-out domain (bits/byte)"] + [f"{g} (bits/byte)" for g in payload["general_sets"]]
    if any("cloze" in r["scores"] for r in payload["models"]):
        cols.append("cloze top-1")
    if any(r["scores"].get("infill") for r in payload["models"]):
        cols += ["infill middle (bits/byte)", "infill exact match"]
    if any("retrieval" in r["scores"] for r in payload["models"]):
        cols += ["retrieval MRR", "BM25 MRR"]
    return cols + ["training", "fingerprint"]


def _cells(row: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    s = row["scores"]
    values = [_num(bits(s, "heldout"))] + [_num(bits(s, g)) for g in payload["general_sets"]]
    if any("cloze" in r["scores"] for r in payload["models"]):
        values.append(f"{s['cloze']['top1']:.1%}" if "cloze" in s else "—")
    if any(r["scores"].get("infill") for r in payload["models"]):
        infill = s.get("infill") or {}
        values += [_num(infill.get("fim_middle_bits_per_byte")),
                   f"{infill['fim_exact_match']:.1%}" if "fim_exact_match" in infill else "—"]
    if any("retrieval" in r["scores"] for r in payload["models"]):
        r = s.get("retrieval") or {}
        values += [_num(r.get("mrr")), _num((r.get("bm25") or {}).get("mrr"))]
    values += [_cost(row.get("cost")), short(row["fingerprint"])]
    return {"name": row["name"], "role": row["role"], "run": ", ".join(row["runs"]), "values": values,
            "cached": row["cached"]}


def _square_cells(square: dict[str, Any] | None) -> dict[str, Any] | None:
    if not square:
        return None
    return {k: {"name": square[k]["name"], "domain": _num(square[k]["domain"]), "general": _num(square[k]["general"]),
                "cost": _cost(square[k]["cost"])} for k in ("old_base", "old_adapted", "new_base", "new_adapted")} | {
        "old_run": square["old_run"], "new_run": square["new_run"]}


def curves_png(payload: dict[str, Any], runs: list[CompareRun]) -> bytes | None:
    """Domain (solid) and general (dashed) bits per byte over training, one colour per run.

    Each line starts at the base (step 0, scored here), passes through the run's own measurements
    during training (a small sample, metrics.jsonl) and ends at the adapted model (scored here)."""
    by_run = {r.name: r for r in runs}
    lines = []
    for i, row in enumerate(r for r in payload["models"] if r["role"] == "adapted"):
        run = by_run[row["run"]]
        base = next((b for b in payload["models"] if b["role"] == "base" and row["run"] in b["runs"]), None)
        metrics = read_metrics(run.workdir / "run" / "metrics.jsonl", run.workdir).value
        during = metrics.tradeoff if metrics else []
        last = (row.get("cost") or {}).get("steps") or (during[-1]["step"] if during else 1)
        for key, during_key in (("heldout", "domain_bpb"), ("general", "general_bpb")):
            score = (lambda r: bits(r["scores"], "heldout")) if key == "heldout" else (lambda r: _mean_general(r, payload))
            points = [(0, score(base))] if base else []
            points += [(p["step"], p[during_key]) for p in during
                       if isinstance(p.get(during_key), (int, float)) and 0 < p["step"] < last]
            points.append((last, score(row)))
            points = [(x, y) for x, y in points if y is not None]
            if len(points) >= 2:
                lines.append({"label": f"{row['run']}: {'domain' if key == 'heldout' else 'general'}", "points": points,
                              "dashed": key != "heldout", "colour": i})
    return runs_curves_png(lines, "Held-out domain (solid) and general (dashed) text over training")


def _mean_general(row: dict[str, Any] | None, payload: dict[str, Any]) -> float | None:
    return _mean([bits(row["scores"], g) for g in payload["general_sets"]]) if row else None


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def _cost(cost: dict[str, Any] | None) -> str:
    if not cost:
        return "—"
    return f"{fmt_duration((cost.get('minutes') or 0) * 60)}, {fmt_si(cost.get('tokens'))} tokens, {fmt_int(cost.get('steps'))} steps"


def _rel(after: float | None, before: float | None) -> float | None:
    return None if after is None or not before else after / before - 1


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>selfsup compare</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;color:#1f2937;max-width:1100px;margin:2em auto;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em}
.decision{background:#eff6ff;border-left:4px solid #2563eb;padding:.6em 1em;margin:1em 0}
.decision p{margin:.3em 0;font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em} td,th{border-bottom:1px solid #e5e7eb;padding:.35em .7em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#6b7280;font-size:.9em}
</style></head><body>
<h1>Which model knows your documents best?</h1>
<p class="muted">selfsup {{ p.version }} · {{ p.created }} · {{ p.runs|length }} runs, {{ p.models|length }} models, scored on the same evidence</p>
<div class="decision">{% for s in p.decision %}<p>{{ s }}</p>{% endfor %}</div>
{% if square %}
<h2>Old base and new base, alone and adapted</h2>
<table><tr><th></th><th>base alone</th><th>adapted</th><th>adapting cost</th></tr>
<tr><th>old: {{ square.old_base.name }} ({{ square.old_run }})</th><td class="n">{{ square.old_base.domain }}</td><td class="n">{{ square.old_adapted.domain }}</td><td>{{ square.old_adapted.cost }}</td></tr>
<tr><th>new: {{ square.new_base.name }} ({{ square.new_run }})</th><td class="n">{{ square.new_base.domain }}</td><td class="n">{{ square.new_adapted.domain }}</td><td>{{ square.new_adapted.cost }}</td></tr>
</table>
<p class="muted">Held-out domain bits per byte (lower is better). Mean general text: old {{ square.old_base.general }} → {{ square.old_adapted.general }}, new {{ square.new_base.general }} → {{ square.new_adapted.general }}.</p>
{% endif %}
<h2>Every model</h2>
<table><tr><th>model</th><th>role</th><th>run</th>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td>{{ r.name }}</td><td>{{ r.role }}</td><td>{{ r.run }}</td>{% for v in r["values"] %}<td class="n">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="muted">Bits per byte: summed negative log-likelihood over the UTF-8 bytes of the same texts for every model, whatever its tokenizer (lower is better).
Held-out: {{ p.evidence.documents }} documents, {{ p.evidence.bytes }} bytes{% if p.evidence.common_only %}; {{ p.evidence.note }}{% else %}, the same held-out split in every run{% endif %}.
{% for g in p.evidence.general %}{{ g.name }}: {{ g.passages }} passages, {{ g.bytes }} bytes. {% endfor %}
{% if p.evidence.cloze_probes %}Cloze: {{ p.evidence.cloze_probes }} probes on salient domain terms, the answer ranked among in-domain candidates.{% endif %}</p>
{% if plot %}<h2>Over training</h2><img alt="domain and general bits per byte over training" src="{{ plot }}" style="max-width:100%">{% endif %}
<h2>Runs</h2>
<table><tr><th>run</th><th>objective</th><th>base</th><th>base fingerprint</th><th>rebased from</th><th>work directory</th></tr>
{% for r in p.runs %}<tr><td>{{ r.name }}</td><td>{{ r.objective }}</td><td>{{ r.base or "scratch" }}</td><td>{{ r.base_fingerprint or "—" }}</td><td>{{ r.rebased_from or "—" }}</td><td>{{ r.workdir }}</td></tr>
{% endfor %}</table>
</body></html>
"""
