"""selfsup: documents in, a self-supervised language model, a lift report and an HF export out."""

__version__ = "0.1.0"
