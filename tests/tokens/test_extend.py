"""`[tokenizer] extend`: domain terms the reused tokenizer splits into many pieces become single tokens."""

from __future__ import annotations

import json
from pathlib import Path

import transformers

from selfsup.manifest import read_manifest, verify_manifest
from selfsup.tokens import document_encoder, load_tokenizer, reuse_tokenizer
from selfsup.tokens.extend import EXTENSION_FILE, extend_tokenizer, read_extension

TERMS = ["sqlite3_prepare_v2", "journal_mode", "WITHOUT_ROWID", "sqlite3_bind_parameter_count"]


def _domain_documents() -> list[str]:
    docs = []
    for i in range(30):
        docs.append(
            f"Call sqlite3_prepare_v2 before stepping statement {i}. The journal_mode pragma sets the log; "
            f"a table declared WITHOUT_ROWID has no rowid, and sqlite3_bind_parameter_count returns {i}.\n"
            "sqlite3_prepare_v2(db, sql, -1, &stmt, 0);"
        )
    return docs


def _extended(tmp_path: Path, base_tokenizer: Path, write_corpus, n: int) -> Path:
    corpus = write_corpus(tmp_path / "corpus", _domain_documents(), ["held out text"])
    out = tmp_path / "tokenizer"
    reuse_tokenizer(base_tokenizer, out, fingerprint="fp")
    extend_tokenizer(corpus, out, n, fingerprint="fp")
    return out


def test_domain_terms_encode_as_one_piece_and_text_round_trips(tmp_path, tokenizer_dir, write_corpus):
    """After extend, each mined domain term is one token for the tokenizer as AutoTokenizer loads it, the
    packer's document encoder agrees, any text still decodes to itself, and fertility drops."""
    out = _extended(tmp_path, tokenizer_dir, write_corpus, n=8)
    tok = transformers.AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    base = load_tokenizer(tokenizer_dir)
    for term in TERMS:
        sentence = f"We use {term} here."
        ids = tok(sentence, add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(" " + term) in ids, (term, tok.convert_ids_to_tokens(ids))
        assert len(ids) < len(base(sentence, add_special_tokens=False)["input_ids"]) - 3
        assert document_encoder(tok).encode(sentence, add_special_tokens=False).ids == ids
    for text in [*_domain_documents()[:3], "Grüße 😀 sqlite3_prepare_v2x and xjournal_mode </s> \n\tjournal_mode"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text

    manifest = read_manifest(out)
    assert verify_manifest(out, "fp")[0]
    ext = manifest["extension"]
    assert ext["added"] == 8 and manifest["vocab_size"] == len(base) + 8
    assert ext["fertility_after"] < ext["fertility_before"] * 0.8  # the corpus is mostly these terms


def test_extension_records_old_pieces_and_is_deterministic(tmp_path, tokenizer_dir, write_corpus):
    """extension.json lists each new token with its id and the base tokenizer's pieces for it (what the
    model's new rows are averaged from); mining the same corpus twice gives the same file."""
    a = _extended(tmp_path / "a", tokenizer_dir, write_corpus, n=6)
    b = _extended(tmp_path / "b", tokenizer_dir, write_corpus, n=6)
    assert (a / EXTENSION_FILE).read_bytes() == (b / EXTENSION_FILE).read_bytes()
    record = read_extension(a)
    base = document_encoder(load_tokenizer(tokenizer_dir))
    ids = [t["id"] for t in record["terms"]]
    assert ids == list(range(len(load_tokenizer(tokenizer_dir)), len(load_tokenizer(tokenizer_dir)) + 6))
    for t in record["terms"]:
        assert t["pieces"] == base.encode(t["token"], add_special_tokens=False).ids
        assert len(t["pieces"]) >= 3 and t["count"] >= 3
    assert json.loads((a / EXTENSION_FILE).read_text())["terms"][0]["token"].startswith(" ")


def test_span_sentinels_join_a_decoder_tokenizer_as_special_tokens_without_changing_text(tmp_path):
    """add_sentinels gives a tokenizer without <extra_id_N> exactly N of them: each one token, dropped by
    skip_special_tokens, recorded with the pieces the base spelled it with; ordinary text encodes as before."""
    from selfsup.tokens import special_ids
    from selfsup.tokens.extend import add_sentinels
    from tests.test_rebase_story import build_qwen2_base

    base = build_qwen2_base(tmp_path / "base", [d * 3 for d in _domain_documents()])
    out = tmp_path / "tokenizer"
    reuse_tokenizer(base, out, fingerprint="fp")
    before = load_tokenizer(out)
    manifest = add_sentinels(out, [f"<extra_id_{i}>" for i in range(12)], fingerprint="fp2")
    tok = transformers.AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    ids = special_ids(tok)
    assert [ids.get(f"extra_id_{i}") for i in range(12)] == list(range(len(before), len(before) + 12))
    assert ids.get("extra_id_12") is None and manifest["sentinels"]["added"] == 12
    assert manifest["vocab_size"] == len(before) + 12 and verify_manifest(out, "fp2")[0]
    assert tok("x <extra_id_3> y", add_special_tokens=False).input_ids.count(ids["extra_id_3"]) == 1
    assert "<extra_id_3>" not in tok.decode(tok("x <extra_id_3> y").input_ids, skip_special_tokens=True)
    plain = "Call sqlite3_prepare_v2 before stepping."
    assert tok(plain, add_special_tokens=False).input_ids == before(plain, add_special_tokens=False).input_ids
    assert document_encoder(tok).encode(plain, add_special_tokens=False).ids == before(plain, add_special_tokens=False).input_ids
    record = read_extension(out)["terms"]
    assert len(record) == 12 and all(t["special"] and t["pieces"] and max(t["pieces"]) < len(before) for t in record)
    assert record[0]["pieces"] == before("<extra_id_0>", add_special_tokens=False).input_ids
