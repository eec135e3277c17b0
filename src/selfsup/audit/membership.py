"""Membership inference: can an attacker tell a training window from a held-out one by the model's
scores alone? Each attack gives a score per window (higher: "member"); its AUC over training
(members) against held-out windows (non-members), with a bootstrap interval, and its true-positive
rate at 1% false positives (the operating point Carlini et al. 2022, "Membership Inference Attacks
From First Principles", argue for).

    loss        −mean token NLL (Yeom et al. 2018)
    zlib        −NLL sum / zlib-compressed bytes of the text (Carlini et al. 2021)
    min_k       mean of the lowest 20% token log-probabilities (Shi et al. 2023, Min-K%)
    min_k_pp    the same on log-probabilities standardised by the vocabulary's mean and spread at each
                position (Zhang et al. 2024, Min-K%++)
    reference   −(NLL of the trained model − NLL of its base): what training changed (Carlini 2021)
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from selfsup.audit.scoring import RowScores

MIN_K = 0.2
BOOTSTRAP = 1000


def attack_scores(scores: RowScores, text: str, base: RowScores | None) -> dict[str, float]:
    lp = scores.log_prob.astype(np.float64)
    k = max(1, int(round(MIN_K * len(lp))))
    standardised = (lp - scores.mu) / scores.sigma
    out = {
        "loss": float(lp.mean()),
        "zlib": float(lp.sum() / len(zlib.compress(text.encode("utf-8")))),
        "min_k": float(np.sort(lp)[:k].mean()),
        "min_k_pp": float(np.sort(standardised)[:k].mean()),
    }
    if base is not None:
        out["reference"] = float(lp.mean() - base.log_prob.astype(np.float64).mean())
    return out


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """P(score of a random member > score of a random non-member), ties counted half (Mann–Whitney)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([members, non_members]))
    n1, n0 = len(members), len(non_members)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_interval(members: np.ndarray, non_members: np.ndarray, member_docs: np.ndarray, non_member_docs: np.ndarray,
                 seed: int, n: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUC, resampling documents (with all their windows): windows
    of one document are not independent, and a few held-out documents would otherwise look like many."""
    rng = np.random.default_rng([seed, 0xB007])
    m_groups = [members[member_docs == d] for d in np.unique(member_docs)]
    n_groups = [non_members[non_member_docs == d] for d in np.unique(non_member_docs)]
    values = []
    for _ in range(n):
        m = np.concatenate([m_groups[i] for i in rng.integers(0, len(m_groups), len(m_groups))])
        o = np.concatenate([n_groups[i] for i in rng.integers(0, len(n_groups), len(n_groups))])
        values.append(auc(m, o))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01) -> float:
    """Share of members scored above the threshold that lets `fpr` of the non-members through."""
    threshold = np.quantile(non_members, 1.0 - fpr, method="higher")
    return float((members > threshold).mean())


def membership_section(members: list[dict[str, float]], non_members: list[dict[str, float]], member_docs: list[str],
                       non_member_docs: list[str], seed: int, base: tuple[list[dict], list[dict]] | None = None) -> dict[str, Any]:
    """Per attack: AUC, its document-bootstrap interval, TPR at 1% FPR; with a base, the same attack run
    with the base's scores (`base_auc`): the base never saw either side, so what it separates is how
    the two sides differ as text, not membership, and `auc_beyond_base` = auc − (base_auc − 0.5) is what
    training added (a base below 0.5 separates the other way, and is not subtracted). `auc` (what the verdict reads) is the strongest attack's, net of that control (the
    reference attack reads the base already, and is taken as it is)."""
    md, nd = np.array(member_docs), np.array(non_member_docs)
    attacks = {}
    for name in members[0] if members else []:
        m = np.array([s[name] for s in members])
        n = np.array([s[name] for s in non_members])
        lo, hi = auc_interval(m, n, md, nd, seed)
        attacks[name] = {"auc": auc(m, n), "auc_low": lo, "auc_high": hi, "tpr_at_1pct_fpr": tpr_at_fpr(m, n)}
        if base is not None and name in base[0][0]:
            control = auc(np.array([s[name] for s in base[0]]), np.array([s[name] for s in base[1]]))
            attacks[name] |= {"base_auc": control, "auc_beyond_base": attacks[name]["auc"] - max(0.0, control - 0.5)}
    net = {a: v.get("auc_beyond_base", v["auc"]) for a, v in attacks.items()}
    best = max(net, key=net.get) if net else None
    shift = attacks[best]["auc"] - net[best] if best else 0.0
    return {"members": len(members), "non_members": len(non_members), "member_documents": len(set(member_docs)),
            "non_member_documents": len(set(non_member_docs)), "attacks": attacks, "strongest": best,
            "auc": net[best] if best else None, "auc_low": attacks[best]["auc_low"] - shift if best else None,
            "auc_high": attacks[best]["auc_high"] - shift if best else None,
            "net_of_base": base is not None}
