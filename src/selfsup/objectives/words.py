"""Where words start in a block of token ids, for any fast tokenizer (byte-level BPE included).

Whole-word masking and TSDAE's word deletion work on words, but a packed block is only token
ids: there is no text to split and no `word_ids()` to ask. So the vocabulary is read once: each
token's text as it reads *after another word* (`convert_tokens_to_string([anchor, token])` minus
the anchor), which gives, for every tokenizer family,

    byte-level BPE  "Ġthe" → " the"   "ing" → "ing"     SentencePiece "▁the" → " the"
    WordPiece       "the"  → " the"   "##ing" → "ing"

and each token keeps the class of its first and last character: space, newline, word character
(letters, digits, and U+FFFD for a piece of a multi-byte character), or other (punctuation, `_`).
A token starts a word when it is special, follows a special, begins with a space (a word owns
its leading space), follows a newline, or changes class from the token before ("x" then ","); a
run of whitespace is one word: close to the splits the tokenizers' own pre-tokenizers make
(GPT-2's regex, BERT's punctuation split; a test compares with `word_ids()` on real text). The first token of a block always starts a word (a word cut by the block edge counts as
its own word here).
"""

from __future__ import annotations

import numpy as np
import torch

SPACE, NEWLINE, WORD, OTHER = 0, 1, 2, 3


def _char_class(ch: str) -> int:
    if ch in "\n\r":
        return NEWLINE
    if ch.isspace():
        return SPACE
    if ch.isalnum() or ch == "\ufffd":
        return WORD
    return OTHER


class WordBoundaries:
    """Per-vocabulary character classes; `starts(blocks)` marks word-start tokens."""

    def __init__(self, first: np.ndarray, last: np.ndarray, blank: np.ndarray, special: list[int]) -> None:
        self.first = torch.from_numpy(first.astype(np.int64))  # (V,) class of the first character
        self.last = torch.from_numpy(last.astype(np.int64))  # (V,) class of the last character
        self.blank = torch.from_numpy(blank.astype(bool))  # (V,) all whitespace
        self.special = torch.tensor(sorted(special), dtype=torch.long)

    @classmethod
    def from_tokenizer(cls, tok, vocab_size: int, special: list[int]) -> "WordBoundaries":
        first = np.full(vocab_size, OTHER, dtype=np.int8)
        last = np.full(vocab_size, OTHER, dtype=np.int8)
        blank = np.zeros(vocab_size, dtype=bool)
        vocab = tok.get_vocab()
        anchor = next((a for a in ("a", "x", "e", "▁a") if a in vocab), None)
        prefix = tok.convert_tokens_to_string([anchor]) if anchor else ""
        for token, idx in vocab.items():
            if idx >= vocab_size:
                continue
            text = tok.convert_tokens_to_string([anchor, token]) if anchor else tok.convert_tokens_to_string([token])
            text = text[len(prefix):] if text.startswith(prefix) else text
            if text:
                first[idx], last[idx], blank[idx] = _char_class(text[0]), _char_class(text[-1]), text.isspace()
        return cls(first, last, blank, special)

    def starts(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: True where a token begins a word. Special tokens are words of their own.

        Whitespace runs are one word; a word's leading space belongs to it (" 3" split as "Ġ" + "3"
        is one word), a newline ends a word; otherwise a word ends where the character class
        (word / punctuation) changes."""
        device = blocks.device
        special = torch.isin(blocks, self.special.to(device))
        first, last, blank = self.first.to(device)[blocks], self.last.to(device)[blocks], self.blank.to(device)[blocks]
        cur_first, cur_blank = first[:, 1:], blank[:, 1:]
        prev_last, prev_blank, prev_special = last[:, :-1], blank[:, :-1], special[:, :-1]
        spaced = (cur_first == SPACE) | (cur_first == NEWLINE)
        start = torch.ones_like(blocks, dtype=torch.bool)
        start[:, 1:] = (
            special[:, 1:] | prev_special
            | (cur_blank & ~prev_blank)
            | (~cur_blank & spaced)
            | (~cur_blank & ~spaced & prev_blank & (prev_last == NEWLINE))
            | (~cur_blank & ~spaced & ~prev_blank & (cur_first != prev_last))
        )
        return start


def word_index(starts: torch.Tensor) -> torch.Tensor:
    """(B, T) word number of each token, 0-based per row (the first token always starts word 0)."""
    return torch.cumsum(starts.long(), dim=1) - 1
