"""Training: the loop, its explicit data position, the schedule, and atomic checkpoints."""

from selfsup.train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from selfsup.train.loop import Interrupted, train, train_fingerprint

__all__ = ["Interrupted", "find_latest", "load_checkpoint", "save_checkpoint", "train", "train_fingerprint"]
