"""How many UTF-8 bytes of text each token id stands for: the denominator of bits-per-byte.

Bits-per-byte compares models with different tokenizers, so it needs the exact number of text
bytes behind the tokens being scored (e.g. the masked tokens of an MLM batch). For a byte-level
BPE this is exact: every character of a token's string is one byte (GPT-2's bytes_to_unicode
table), so the byte lengths of a document's tokens sum to the document's UTF-8 length.
"""

from __future__ import annotations

import json
import re

import numpy as np
import transformers

from selfsup.tokens.load import vocab_size

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece byte-fallback tokens


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table (the alphabet of ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def token_byte_lengths(tok: transformers.PreTrainedTokenizerFast) -> np.ndarray:
    """int32 array (vocab_size,): UTF-8 bytes each token id stands for.

    Special tokens count 0 (they are not text); a non-special added token counts the bytes of its
    content (it is matched literally in text). Byte-level vocabularies are exact: each character
    of a token string is one byte. Other vocabularies are approximate: `<0xNN>` byte-fallback
    tokens count 1, and any other token counts what it adds when decoded after a plain token, so
    a SentencePiece "▁the" or a WordPiece word after a space counts its space, "##ing" does not.
    """
    out = np.zeros(vocab_size(tok), dtype=np.int32)
    vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=False)
    spec = json.loads(tok.backend_tokenizer.to_str())
    if _mentions(spec.get("decoder"), "ByteLevel"):
        byte_chars = set(bytes_to_unicode().values())
    else:
        byte_chars = set()
    anchor = next((a for a in ("a", "x", "e", "▁a") if a in vocab), None)
    anchor_bytes = len(tok.convert_tokens_to_string([anchor]).encode("utf-8")) if anchor else 0
    for token, idx in vocab.items():
        if byte_chars and all(c in byte_chars for c in token):
            out[idx] = len(token)
        elif _BYTE_FALLBACK.match(token):
            out[idx] = 1
        elif anchor is not None:
            out[idx] = len(tok.convert_tokens_to_string([anchor, token]).encode("utf-8")) - anchor_bytes
        else:
            out[idx] = len(tok.convert_tokens_to_string([token]).encode("utf-8"))
    for idx, added in tok.backend_tokenizer.get_added_tokens_decoder().items():
        out[idx] = 0 if added.special else len(added.content.encode("utf-8"))
    return np.maximum(out, 0)


def _mentions(node: object, value: str) -> bool:
    """Does a tokenizer.json component (nested dicts / lists) hold `value` anywhere as a string?"""
    if isinstance(node, dict):
        return any(_mentions(v, value) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(v, value) for v in node)
    return node == value
