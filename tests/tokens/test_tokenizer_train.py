"""Tokenizer stage: training, the saved HF directory, reuse of a base model's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from selfsup.config import TokenizerConfig
from selfsup.errors import UsageError
from selfsup.manifest import read_manifest, verify_manifest
from selfsup.tokens import document_encoder, load_tokenizer, special_ids, train_tokenizer

TEXTS = [
    "Grüße aus Zürich: naïve café, déjà vu — “quotes” and ‘apostrophes’.",
    "Emoji 😀🚀👩‍💻🇫🇷 mixed with text 🙂.",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # circle\n\n\tindent\ttabs\r\n",
    "Кириллица и ไทย never seen in training \x00\x07\u200b",
    " leading space",
    "",
]


def test_autotokenizer_loads_with_special_tokens_at_fixed_ids(tokenizer_dir: Path) -> None:
    """transformers.AutoTokenizer loads the directory with <pad>=0 <s>=1 </s>=2 <unk>=3 <mask>=4 set."""
    tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token, tok.mask_token) == (
        "<pad>", "<s>", "</s>", "<unk>", "<mask>",
    )
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    ids = special_ids(tok)
    assert {k: ids[k] for k in ("pad", "bos", "eos", "unk", "mask")} == {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "mask": 4}
    # the objectives' sentinels are reserved at fixed ids too (fim, span), inside vocab_size
    assert (ids["fim_prefix"], ids["fim_middle"], ids["fim_suffix"]) == (5, 6, 7)
    assert [ids[f"extra_id_{i}"] for i in range(32)] == list(range(8, 40))
    assert tok.decode([5, 100, 8], skip_special_tokens=True) == tok.decode([100])
    assert len(tok) == 400


def test_tokenizer_call_adds_no_bos_or_eos(tokenizer_dir: Path) -> None:
    """`tok("hello")` returns only the text's tokens: no post-processor adds BOS/EOS (the packer adds EOS)."""
    tok = load_tokenizer(tokenizer_dir)
    out = tok("hello")
    assert out["input_ids"] == tok.encode("hello", add_special_tokens=False)
    assert not set(out["input_ids"]) & {0, 1, 2, 3, 4}
    assert tok.decode(out["input_ids"]) == "hello"


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_lossless_and_never_unknown(tokenizer_dir: Path, text: str) -> None:
    """decode(encode(text)) == text for any unicode, emoji and code, and <unk> never appears (byte alphabet)."""
    tok = load_tokenizer(tokenizer_dir)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_trains_on_train_split_only(tmp_path: Path, write_corpus, sample_documents: list[str]) -> None:
    """Validation text is never fed to the trainer: a word repeated only there is not learnt as a token."""
    secret = "zqxjvw"
    train = sample_documents
    corpus = write_corpus(tmp_path / "corpus", train, [f"{secret} " * 500], parts=2)
    manifest = train_tokenizer(corpus, tmp_path / "tok", TokenizerConfig(vocab_size=400), "fp")
    assert manifest["trained_on_chars"] == sum(len(t) for t in train)
    assert manifest["trained_on_documents"] == len(train)
    vocab = load_tokenizer(tmp_path / "tok").get_vocab()
    assert not [t for t in vocab if "zqx" in t or "xjv" in t]


def test_max_train_chars_caps_what_the_trainer_reads(tmp_path: Path, write_corpus, sample_documents: list[str]) -> None:
    """No more than max_train_chars characters are fed; the manifest records exactly how many."""
    corpus = write_corpus(tmp_path / "corpus", sample_documents)
    manifest = train_tokenizer(corpus, tmp_path / "tok", TokenizerConfig(vocab_size=300, max_train_chars=5000), "fp")
    assert manifest["trained_on_chars"] == 5000
    assert manifest["trained_on_documents"] >= 1


def test_manifest_last_verifies_and_stale_files_are_cleared(tmp_path: Path, write_corpus, sample_documents: list[str]) -> None:
    """The directory is emptied of an earlier tokenizer's files and committed by a verifying manifest."""
    out = tmp_path / "tok"
    out.mkdir()
    (out / "vocab.json").write_text("{}")  # stale file from an earlier `from` run
    (out / "manifest.json").write_text("{}")
    corpus = write_corpus(tmp_path / "corpus", sample_documents)
    manifest = train_tokenizer(corpus, out, TokenizerConfig(vocab_size=300), "fingerprint-1")
    assert not (out / "vocab.json").exists()
    assert sorted(manifest["files"]) == ["tokenizer.json", "tokenizer_config.json"]
    assert verify_manifest(out, "fingerprint-1") == (True, "verified")
    assert manifest["special_tokens"]["eos"] == {"token": "</s>", "id": 2}
    assert manifest["from"] is None


def test_refuses_to_clear_a_directory_that_is_not_a_tokenizers(tmp_path: Path, write_corpus, sample_documents: list[str]) -> None:
    """A user's unrelated file in out_dir makes the stage stop with a usage error, and is left alone."""
    out = tmp_path / "tok"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    corpus = write_corpus(tmp_path / "corpus", sample_documents)
    with pytest.raises(UsageError, match="notes.txt"):
        train_tokenizer(corpus, out, TokenizerConfig(vocab_size=300), "fp")
    assert (out / "notes.txt").read_text() == "mine"


def test_corpus_without_training_documents_is_a_usage_error(tmp_path: Path, write_corpus) -> None:
    """No train-split documents (or no corpus at all) is reported as something the user can fix."""
    corpus = write_corpus(tmp_path / "corpus", [], ["only validation"])
    with pytest.raises(UsageError, match="no training documents"):
        train_tokenizer(corpus, tmp_path / "tok", TokenizerConfig(vocab_size=300), "fp")
    with pytest.raises(UsageError, match="part-"):
        train_tokenizer(tmp_path / "nothing", tmp_path / "tok2", TokenizerConfig(vocab_size=300), "fp")


def test_from_dir_reuses_a_tokenizer_unchanged(tokenizer_dir: Path, tmp_path: Path) -> None:
    """`from` copies a model's tokenizer files; the copy loads and encodes exactly like the original."""
    cfg = TokenizerConfig.model_validate({"from": str(tokenizer_dir)})
    manifest = train_tokenizer(tmp_path / "no-corpus-needed", tmp_path / "tok", cfg, "fp")
    assert manifest["from"] == str(tokenizer_dir)
    assert manifest["pad_falls_back_to_eos"] is False
    assert verify_manifest(tmp_path / "tok", "fp")[0]
    original, copy = load_tokenizer(tokenizer_dir), load_tokenizer(tmp_path / "tok")
    assert copy.get_vocab() == original.get_vocab()
    for text in TEXTS:
        assert copy.encode(text) == original.encode(text)


def test_from_dir_without_pad_falls_back_to_eos(tokenizer_dir: Path, tmp_path: Path) -> None:
    """A base tokenizer with eos but no pad is accepted; the manifest says pad falls back to eos."""
    base = tmp_path / "base"
    tok = load_tokenizer(tokenizer_dir)
    bare = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="</s>")
    bare.save_pretrained(str(base))
    manifest = train_tokenizer(tmp_path, tmp_path / "tok", TokenizerConfig.model_validate({"from": str(base)}), "fp")
    assert manifest["pad_falls_back_to_eos"] is True
    assert manifest["special_tokens"]["pad"]["id"] == manifest["special_tokens"]["eos"]["id"] == 2
    ids = special_ids(load_tokenizer(tmp_path / "tok"))
    assert ids["pad"] == ids["eos"] == 2 and ids["bos"] is None


def test_from_dir_without_a_tokenizer_is_a_one_line_usage_error(tmp_path: Path) -> None:
    """An empty directory, or one whose tokenizer.json is broken, fails with one actionable line."""
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text(json.dumps({"not": "a tokenizer"}))
    for src in (empty, broken, tmp_path / "missing"):
        with pytest.raises(UsageError) as err:
            train_tokenizer(tmp_path, tmp_path / "out", TokenizerConfig.model_validate({"from": str(src)}), "fp")
        assert "\n" not in str(err.value) and str(src) in str(err.value)
    assert read_manifest(tmp_path / "out") is None


def test_document_encoder_treats_special_token_strings_as_text(tokenizer_dir: Path) -> None:
    """A document that contains "</s>" is encoded as text: EOS ids come only from the packer."""
    tok = load_tokenizer(tokenizer_dir)
    text = "tags like </s> and <pad> and <mask> are text here"
    ids = document_encoder(tok).encode(text, add_special_tokens=False).ids
    assert not set(ids) & {0, 1, 2, 3, 4}
    assert tok.decode(ids) == text
