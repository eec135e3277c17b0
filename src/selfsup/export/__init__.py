"""Export: a checkpoint → a Hugging Face model directory that loads without selfsup installed."""

from selfsup.export.hf import export_fingerprint, export_model

__all__ = ["export_fingerprint", "export_model"]
