"""Evaluation: what the model learned, measured on held-out documents against baselines."""

from selfsup.evaluation.bits_per_byte import Score, score_clm, score_unigram_clm
from selfsup.evaluation.evaluate import evaluate, evaluate_fingerprint
from selfsup.evaluation.masked import score_masked, score_unigram_masked

__all__ = [
    "Score",
    "evaluate",
    "evaluate_fingerprint",
    "score_clm",
    "score_masked",
    "score_unigram_clm",
    "score_unigram_masked",
]
