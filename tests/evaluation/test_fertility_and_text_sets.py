"""Fertility arithmetic on hand-checkable text, and general text sets read from files and folders."""

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from selfsup.errors import UsageError
from selfsup.evaluation.fertility import fertility
from selfsup.evaluation.text_sets import read_text_sets, split_passages, spread


def test_fertility_counts_tokens_per_word_and_bytes_per_token():
    """A character-level tokenizer on "ab cd" gives 5 tokens (a b ␣ c d) for 2 words and 5 bytes:
    2.5 tokens per word, 1 byte per token."""
    vocab = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "d": 4, " ": 5, "é": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    f = fertility(hf, ["ab cd"])
    assert (f["tokens"], f["words"], f["bytes"]) == (5, 2, 5)
    assert f["tokens_per_word"] == 2.5 and f["bytes_per_token"] == 1.0
    g = fertility(hf, ["é"])  # one token standing for two UTF-8 bytes
    assert g["bytes_per_token"] == 2.0


def test_text_sets_read_files_and_folders_spread_and_named(tmp_path: Path):
    """A folder set reads .txt and .html (main text, no markup), skips other files and hidden ones;
    a file set is named after its stem; a missing path is a UsageError naming [eval] texts."""
    folder = tmp_path / "kjv"
    folder.mkdir()
    (folder / "a.txt").write_text("In the beginning was the word.\n\nSecond paragraph.")
    (folder / "b.html").write_text("<html><body><p>Hello <b>there</b> friend.</p><script>x()</script></body></html>")
    (folder / "c.bin").write_bytes(b"\0\1\2")
    (folder / ".hidden.txt").write_text("secret")
    single = tmp_path / "notes.md"
    single.write_text("# Notes\n\nshort")
    sets = read_text_sets([folder, single], max_passages=10)
    assert [s.name for s in sets] == ["kjv", "notes"]
    joined = "\n".join(sets[0].passages)
    assert "In the beginning" in joined and "Hello" in joined and "there" in joined
    assert "<b>" not in joined and "x()" not in joined and "secret" not in joined
    with pytest.raises(UsageError, match=r"\[eval\] texts"):
        read_text_sets([tmp_path / "nope"], max_passages=5)


def test_passages_are_capped_and_spread_is_even():
    """Paragraphs join up to the size; a long paragraph is cut at spaces; spread keeps first and evenly spaced items."""
    text = "\n\n".join(["word " * 100] * 3)  # three paragraphs of 500 chars
    parts = split_passages(text, size=700)
    assert len(parts) == 3 and all(len(p) <= 700 for p in parts)
    long = split_passages("x " * 1000, size=300)
    assert all(len(p) <= 300 for p in long) and "".join(long).replace(" ", "") == "x" * 1000
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread([1, 2], 5) == [1, 2]
