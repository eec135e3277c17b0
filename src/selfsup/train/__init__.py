"""Training: the loop, its explicit data position, the schedule, and atomic checkpoints."""

from selfsup.train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from selfsup.train.loop import Interrupted, run_fingerprint, train, train_fingerprint

__all__ = [
    "Interrupted", "find_latest", "load_checkpoint", "run_fingerprint", "save_checkpoint", "train", "train_fingerprint",
]
