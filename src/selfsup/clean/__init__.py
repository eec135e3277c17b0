"""clean: documents → documents. For now the one normaliser every document goes through."""

from selfsup.clean.normalise import normalise_text

__all__ = ["normalise_text"]
