"""Tokenizer stage: corpus → Hugging Face tokenizer directory (train a byte-level BPE, or reuse one)."""

from selfsup.tokens.byte_lengths import token_byte_lengths
from selfsup.tokens.load import document_encoder, document_opener, load_tokenizer, special_ids, vocab_size
from selfsup.tokens.train import SPECIAL_TOKENS, reuse_tokenizer, train_tokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "document_encoder",
    "document_opener",
    "load_tokenizer",
    "reuse_tokenizer",
    "special_ids",
    "token_byte_lengths",
    "train_tokenizer",
    "vocab_size",
]
