"""token_byte_lengths: the exact text bytes behind tokens, the denominator of bits-per-byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from selfsup.tokens import document_encoder, load_tokenizer, token_byte_lengths
from selfsup.tokens.train import RESERVED_TOKENS


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> transformers.PreTrainedTokenizerFast:
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def lengths(tok: transformers.PreTrainedTokenizerFast) -> np.ndarray:
    return token_byte_lengths(tok)


def test_shape_dtype_and_special_tokens_count_zero(tok, lengths: np.ndarray) -> None:
    """One int32 entry per id; the five special tokens stand for no text; every byte token for one byte."""
    assert lengths.dtype == np.int32 and lengths.shape == (len(tok),)
    n_reserved = len(RESERVED_TOKENS)  # 5 specials + the objectives' 35 sentinels
    assert lengths[:n_reserved].tolist() == [0] * n_reserved
    assert (lengths[n_reserved : n_reserved + 256] == 1).all()  # the byte alphabet comes right after them
    assert (lengths[n_reserved:] >= 1).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200).filter(lambda t: "<" not in t))  # special strings: next test
def test_byte_lengths_sum_to_utf8_length(tok, lengths: np.ndarray, text: str) -> None:
    """For any text, the byte lengths of its tokens sum to len(text.encode('utf-8')) exactly."""
    ids = tok.encode(text, add_special_tokens=False)
    assert int(lengths[ids].sum()) == len(text.encode("utf-8"))


def test_byte_lengths_exact_on_mixed_documents_with_special_strings(tok, lengths: np.ndarray) -> None:
    """Exact too for documents holding emoji, CJK, code and literal "</s>", as the packer encodes them."""
    rng = np.random.default_rng(0)
    pieces = ["the ", "naïve ", "😀", "👩‍💻", "中文", "\n\t", "def f(x):", "</s>", "<mask>", "\x00", "  ", "Zürich"]
    texts = ["".join(rng.choice(pieces, size=rng.integers(1, 40))) for _ in range(50)]
    for text, enc in zip(texts, document_encoder(tok).encode_batch_fast(texts, add_special_tokens=False)):
        assert int(lengths[enc.ids].sum()) == len(text.encode("utf-8"))


def test_non_byte_level_vocabularies_fall_back_to_the_decoder() -> None:
    """A WordPiece vocabulary gets a decoder-based count: specials 0, "##ing" 3, a word plus its space."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5, "##ing": 6, "x": 7}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]", cls_token="[CLS]", pad_token="[PAD]", mask_token="[MASK]"
    )
    assert token_byte_lengths(tok).tolist() == [0, 0, 0, 0, 0, len(" hello"), len("ing"), len(" x")]
