"""The privacy section: does the model give away what it was trained on? (audit.json, audit/)

A verdict table first (PASS / WARN / FAIL per test, the measured figure, the rule and the paper),
then each test's figures: canary exposure per repetition count, extraction rates for the trained
model and its base, every membership attack, and the PII found in samples (masked, with the source
file of any leak). The profile's sizes are on the page, so a reader knows how much was tested.
"""

from __future__ import annotations

from typing import Any

from selfsup.report.formatting import DASH, fmt_float, fmt_int, fmt_pct, is_number
from selfsup.report.inputs import ReportInputs

TESTS = {"canaries": "Canary exposure", "extraction": "Extraction", "membership": "Membership inference",
         "regurgitation": "PII regurgitation"}
ATTACKS = {"loss": "loss", "zlib": "zlib ratio", "min_k": "Min-K% (20%)", "min_k_pp": "Min-K%++ (20%)",
           "reference": "reference (trained − base)"}


def privacy_section(inputs: ReportInputs) -> dict[str, Any]:
    """{} when the work directory has no audit.json (the audit did not run)."""
    audit = inputs.privacy.value
    if not audit:
        return {}
    verdicts = [{"test": label, "verdict": _dict(audit.get(t)).get("verdict", DASH),
                 **{k: _dict(_dict(audit.get(t)).get("verdict_detail")).get(k, "") for k in ("measured", "rule", "source")}}
                for t, label in TESTS.items()]
    return {"verdicts": verdicts, "profile": audit.get("profile"), "sizes": _sizes(audit),
            "canaries": _canaries(_dict(audit.get("canaries"))), "extraction": _extraction(_dict(audit.get("extraction"))),
            "membership": _membership(_dict(audit.get("membership"))),
            "regurgitation": _dict(audit.get("regurgitation"))}


def _sizes(audit: dict[str, Any]) -> str:
    s = _dict(audit.get("sizes"))
    m = _dict(audit.get("membership"))
    r = _dict(audit.get("regurgitation"))
    return (f"{audit.get('profile')} profile: {fmt_int(s.get('references'))} never-planted references per canary template; "
            f"{fmt_int(m.get('members'))} training and {fmt_int(m.get('non_members'))} held-out windows of 100 tokens "
            f"(from {fmt_int(m.get('member_documents'))} and {fmt_int(m.get('non_member_documents'))} documents), plus up to "
            f"{fmt_int(s.get('duplicated_windows'))} most-duplicated and {fmt_int(s.get('pii_windows'))} PII-adjacent training "
            f"windows; {fmt_int(r.get('samples'))} samples of {fmt_int(r.get('new_tokens'))} tokens.")


def _canaries(c: dict[str, Any]) -> dict[str, Any]:
    if not c.get("planted"):
        return {"note": c.get("note", "no canaries")}
    rows = [{"r": r, "n": v.get("canaries"), "mean": fmt_float(v.get("mean_exposure"), 2), "max": fmt_float(v.get("max_exposure"), 2),
             "mean_x": fmt_float(v.get("mean_exposure_extrapolated"), 2), "max_x": fmt_float(v.get("max_exposure_extrapolated"), 2),
             "guesses": f"{v['median_guesses']:.2g}" if is_number(v.get("median_guesses")) else DASH,
             "above": v.get("above_chance")}
            for r, v in sorted(_dict(c.get("by_repetition")).items(), key=lambda kv: int(kv[0]))]
    return {"rows": rows, "controls": c.get("controls"), "control_mean": fmt_float(c.get("reference_mean_exposure"), 2),
            "threshold": fmt_float(c.get("chance_threshold"), 1), "largest_r": c.get("largest_r_at_chance"),
            "references": fmt_int(c.get("references_per_template"))}


def _extraction(e: dict[str, Any]) -> dict[str, Any]:
    if e.get("applies") is False:
        return {"note": e.get("note")}
    rates = _dict(e.get("rates"))
    keys = sorted({k for m in rates.values() for k in _dict(m)})
    rows = [{"group": k.replace("validation", "held-out").replace("/", ", ").replace("_", " "),
             **{m: (f"{fmt_pct(_dict(_dict(rates.get(m)).get(k)).get('rate'))} of {fmt_int(_dict(_dict(rates.get(m)).get(k)).get('windows'))}"
                    if k in _dict(rates.get(m)) else DASH) for m in ("trained", "base")}} for k in keys]
    return {"rows": rows, "has_base": "base" in rates, "examples": e.get("examples") or []}


def _membership(m: dict[str, Any]) -> dict[str, Any]:
    rows = [{"attack": ATTACKS.get(a, a), "auc": fmt_float(v.get("auc")), "interval": f"{fmt_float(v.get('auc_low'))}–{fmt_float(v.get('auc_high'))}",
             "tpr": fmt_pct(v.get("tpr_at_1pct_fpr")), "base_auc": fmt_float(v.get("base_auc")) if "base_auc" in v else DASH,
             "net": fmt_float(v.get("auc_beyond_base")) if "auc_beyond_base" in v else DASH, "strongest": a == m.get("strongest")}
            for a, v in _dict(m.get("attacks")).items()]
    return {"rows": rows, "net_of_base": m.get("net_of_base")}


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}
