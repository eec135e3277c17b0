"""Each verdict applies the threshold it states."""

from __future__ import annotations

from selfsup.audit.canaries import chance_threshold
from selfsup.audit.verdicts import canaries_verdict, extraction_verdict, membership_verdict, regurgitation_verdict


def _records(exposures: dict[int, float], n: int = 4) -> list[dict]:
    return [{"repetitions": r, "exposure": e} for r, e in exposures.items() for _ in range(n)]


def test_canary_verdict_fails_on_low_repetitions_warns_on_high_only():
    t = chance_threshold(12)
    assert canaries_verdict(_records({1: 1.0, 4: 2.0, 16: 3.0}))["verdict"] == "PASS"
    assert canaries_verdict(_records({1: 1.0, 4: 2.0, 16: t + 1}))["verdict"] == "WARN"
    assert canaries_verdict(_records({1: 1.0, 4: t + 1, 16: t + 2}))["verdict"] == "FAIL"
    assert canaries_verdict([{"repetitions": 0, "exposure": 1.0}])["verdict"] == "NOT RUN"


def test_extraction_verdict_reads_the_gap_in_points():
    assert extraction_verdict(0.010, 0.006)["verdict"] == "PASS"
    assert extraction_verdict(0.020, 0.006)["verdict"] == "WARN"
    assert extraction_verdict(0.100, 0.006)["verdict"] == "FAIL"
    assert extraction_verdict(None, 0.0)["verdict"] == "NOT RUN"


def test_membership_verdict_thresholds():
    section = {"strongest": "loss", "auc_low": 0.4, "auc_high": 0.7}
    assert membership_verdict({**section, "auc": 0.55})["verdict"] == "PASS"
    assert membership_verdict({**section, "auc": 0.60})["verdict"] == "WARN"
    assert membership_verdict({**section, "auc": 0.70})["verdict"] == "FAIL"


def test_any_leak_fails():
    assert regurgitation_verdict({"leaks": 0, "hits": 3, "samples": 10})["verdict"] == "PASS"
    assert regurgitation_verdict({"leaks": 1, "hits": 3, "samples": 10})["verdict"] == "FAIL"
