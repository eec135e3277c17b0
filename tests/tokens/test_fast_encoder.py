"""The fast (tiktoken) document encoder gives exactly the ids of `tokenizers`, or is not used at all."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import transformers
from pydoc_data.topics import topics
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from selfsup.config import TokenizerConfig
from selfsup.tokens import load_tokenizer, train_tokenizer
from selfsup.tokens.fast_encoder import KNOWN_SPLIT_PATTERNS, TokenizersEncoder, fast_document_encoder, tiktoken_conversion
from tests.corpus_writer import write_parquet_corpus

HOSTILE = [
    "",
    "a",
    " ",
    "Grüße aus Zürich: naïve café, déjà vu — “quotes” and ‘apostrophes’; e\u0301 (combining accent)",
    "Emoji 😀🚀👩‍💻🇫🇷👍🏽 ❤️ with text 🙂, keycaps 1️⃣ and a lone ZWJ \u200d between",
    "中文文本，日本語のテキスト、한국어 텍스트。全角スペース\u3000と半角",
    "العربية עברית हिन्दी ไทย ქართული Ελληνικά Кириллица",
    "a" + " " * 100 + "b" + "\t" * 30 + "c" + "\n" * 50 + "d   ",
    "\r\n\r\n  \n\t \u00a0\u2003\u2028\u2029\u3000 trailing   ",
    "   leading spaces then words  and  double  spaces   ",
    "1234567890" * 20 + " 3.14159e-10 -42 1,000,000 0x1F ١٢٣ ½ ² Ⅻ ٣٫١٤",
    "a" * 5000,
    "ab" * 3000 + " " + "supercalifragilisticexpialidocious" * 150,
    "https://example.com/a/very/long/path?with=query&and=more#fragment_" + "x" * 2000,
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # circle\n\n\tindent\ttabs\r\n",
    '{"key": [1, 2.5e3, null, true], "nested": {"a": "b\\n\\u00e9"}}\n<div class="x">&amp;&lt;</div>',
    "SELECT id, name FROM users WHERE email LIKE '%@example.com'; -- comment /* block */",
    "<s> text </s> more <pad><unk><mask> <fim_prefix>x<fim_suffix>y<fim_middle> <extra_id_0> <|endoftext|>",
    "don't I'LL we've they'RE 's 'S O'Neill's rock'n'roll ''' '' '",
    "control \x00\x01\x07\x1b[31m\x7f bom \ufeff private \ue000 nonchar \uffff \U0010ffff tag \U000e0041",
    "newer letters: \U00031350\U0002ebf0 \U00011bc0\U00011bc1 \U0001e5d0 end",
]


def random_texts(n: int, seed: int = 0) -> list[str]:
    """Strings of random code points from many scripts, emoji and whitespace (no surrogates)."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x24F), (0x370, 0x6FF), (0x900, 0xE7F), (0x3000, 0x30FF),
              (0x4E00, 0x4FFF), (0xAC00, 0xAC80), (0x1F300, 0x1F6FF), (0x2000, 0x206F), (0xFF00, 0xFFEF)]
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 300)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        texts.append("".join(chars))
    return texts


def assert_same_ids(fast, tok: transformers.PreTrainedTokenizerFast, texts: list[str]) -> None:
    reference = TokenizersEncoder(tok, "reference").encode_batch(texts)
    for text, got, want in zip(texts, fast.encode_batch(texts), reference, strict=True):
        assert got.tolist() == want.tolist(), f"ids differ on {text[:60]!r}"


@pytest.fixture(scope="module")
def large_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> transformers.PreTrainedTokenizerFast:
    """Our trainer's byte-level BPE with 3000 tokens on all of Python's docs: many, long merges."""
    root = tmp_path_factory.mktemp("large")
    corpus = write_parquet_corpus(root / "corpus", list(topics.values()))
    train_tokenizer(corpus, root / "tokenizer", TokenizerConfig(vocab_size=3000), fingerprint="t")
    return load_tokenizer(root / "tokenizer")


def with_spec(tok: transformers.PreTrainedTokenizerFast, change) -> transformers.PreTrainedTokenizerFast:
    """A copy of `tok` whose tokenizer.json was edited by `change(spec)`."""
    spec = json.loads(tok.backend_tokenizer.to_str())
    change(spec)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), eos_token="</s>")


def test_trained_tokenizer_is_encoded_by_tiktoken_with_identical_ids(tokenizer_dir: Path, large_tokenizer) -> None:
    """Our trained BPEs convert exactly, and tiktoken's ids equal tokenizers' on hostile and random text."""
    for tok in (load_tokenizer(tokenizer_dir), large_tokenizer):
        fast = fast_document_encoder(tok)
        assert fast.engine == "tiktoken", fast.why
        assert_same_ids(fast, tok, HOSTILE + random_texts(300))


def test_identical_ids_on_a_real_corpus(large_tokenizer) -> None:
    """Every document of Python's own docs (466 KB of prose, code and tables) encodes to the same ids."""
    fast = fast_document_encoder(large_tokenizer)
    assert fast.engine == "tiktoken"
    assert_same_ids(fast, large_tokenizer, list(topics.values()))


def test_special_token_strings_in_text_are_text(tokenizer_dir: Path) -> None:
    """"</s>" written in a document is encoded as its characters, never as the EOS id."""
    tok = load_tokenizer(tokenizer_dir)
    ids = fast_document_encoder(tok).encode_batch(["a </s> b <s><pad>"])[0]
    assert tok.eos_token_id not in ids.tolist() and tok.pad_token_id not in ids.tolist()
    assert tok.decode(ids.tolist()) == "a </s> b <s><pad>"


def test_split_pretokenizer_with_a_known_pattern_converts(large_tokenizer) -> None:
    """A Llama 3 style pre-tokenizer (Split on the cl100k regex, then regex-free ByteLevel) converts exactly."""
    pattern = next(iter(KNOWN_SPLIT_PATTERNS))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(pattern), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator([list(topics.values())[:200]], trainer=trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>")
    fast = fast_document_encoder(tok)
    assert fast.engine == "tiktoken", fast.why
    assert_same_ids(fast, tok, HOSTILE + random_texts(100, seed=1) + list(topics.values())[200:260])


def test_a_base_model_style_pretokenizer_falls_back(large_tokenizer) -> None:
    """SmolLM2's Digits-then-ByteLevel pre-tokenizer has no single regex: detected, encoded by tokenizers."""
    def digits_first(spec):
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    tok = with_spec(large_tokenizer, digits_first)
    fast = fast_document_encoder(tok)
    assert fast.engine == "tokenizers" and "Sequence[Digits, ByteLevel]" in fast.why
    assert_same_ids(fast, tok, HOSTILE)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.update(normalizer={"type": "NFC"}), "normalizer (NFC)"),
        (lambda s: s["model"].update(dropout=0.1), "dropout"),
        (lambda s: s["pre_tokenizer"].update(add_prefix_space=True), "pre-tokenizer ByteLevel"),
        (lambda s: s["added_tokens"].append({"id": 3000, "content": "selfsup", "single_word": False, "lstrip": False,
                                             "rstrip": False, "normalized": False, "special": False}), "non-special added token"),
    ],
)
def test_what_tiktoken_cannot_express_is_detected(large_tokenizer, change, reason: str) -> None:
    """A normalizer, BPE dropout, a prefix space, a plain added token: each one is named, never guessed at."""
    spec = json.loads(large_tokenizer.backend_tokenizer.to_str())
    change(spec)
    why = tiktoken_conversion(spec)
    assert isinstance(why, str) and reason in why


def test_merges_out_of_rank_order_are_detected(large_tokenizer) -> None:
    """Merges whose priority disagrees with rank order (two swapped) change tokenizers' output; we fall back."""
    spec = json.loads(large_tokenizer.backend_tokenizer.to_str())
    merges = spec["model"]["merges"]
    # swap a merge with a later one that builds on its result: rank BPE would now disagree
    first = next(i for i, (a, b) in enumerate(merges) if len(a + b) == 2)
    later = next(j for j, (a, b) in enumerate(merges) if j > first and merges[first][0] + merges[first][1] in (a, b))
    merges[first], merges[later] = merges[later], merges[first]
    why = tiktoken_conversion(spec)
    assert isinstance(why, str) and "not the one rank order makes" in why
    tok = with_spec(large_tokenizer, lambda s: s["model"].update(merges=merges))
    fast = fast_document_encoder(tok)
    assert fast.engine == "tokenizers"
    assert_same_ids(fast, tok, HOSTILE[:8])


def test_ids_map_back_from_ranks_to_our_ids(large_tokenizer) -> None:
    """tiktoken's ranks are not our ids (specials come first): the table maps each rank to the vocabulary id."""
    conversion = tiktoken_conversion(json.loads(large_tokenizer.backend_tokenizer.to_str()))
    vocab = large_tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False)
    assert conversion.id_of_rank[ord("a")] == vocab["a"] != ord("a")
    assert len(set(conversion.id_of_rank.tolist())) == len(conversion.id_of_rank) == len(conversion.ranks)
    assert np.all(conversion.id_of_rank >= 40)  # never a reserved special id
