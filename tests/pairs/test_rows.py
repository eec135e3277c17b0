"""Mined rows: each hard negative comes from another document and shares the query's words; the
stage writes rows the contrastive objective reads back as queries, positives and negatives."""

import json

import torch

from selfsup.objectives.contrastive import Contrastive
from selfsup.pairs.rows import PairRows, build_pairs, encode_texts, hard_negatives
from selfsup.pairs.structure import Pair, Passage
from selfsup.tokens import load_tokenizer, special_ids


def test_hard_negative_is_the_best_passage_of_another_document():
    passages = [Passage(0, "vacuum rebuilds the database file", "", True),
                Passage(0, "vacuum into writes a copy", "", False),  # same document: never the negative
                Passage(1, "the vacuum command and auto vacuum", "", True),
                Passage(2, "triggers fire on insert", "", True)]
    pairs = [Pair("title", "vacuum", "vacuum rebuilds the database file", 0, 0),
             Pair("title", "nothing shared here", "triggers fire on insert", 3, 2)]
    chosen, mined = hard_negatives(passages, pairs, seed=0)
    assert chosen[0] == 2
    assert passages[chosen[1]].doc != 2  # no word in common: a random passage, still of another document
    assert mined == 1


def test_pairs_stage_rows_read_back_as_queries_positives_and_negatives(tmp_path, prepared):
    manifest = build_pairs(prepared["corpus"], prepared["tokenizer"], tmp_path / "pairs", passage_tokens=32, seed=0,
                           fingerprint="fp")
    summary = json.loads((tmp_path / "pairs" / "pairs.json").read_text())
    assert manifest["pairs"] == summary["train"]["pairs"] > 50
    assert set(summary["train"]["kinds"]) == {"title", "first_sentence", "ict"}
    rows = PairRows(tmp_path / "pairs", "train")
    assert rows.seq_len == 3 * 32 and len(rows) == summary["train"]["pairs"]

    tok = load_tokenizer(prepared["tokenizer"])
    ids = special_ids(tok)
    objective = Contrastive(ids, passage_tokens=32, positives="structure")
    batch = objective.make_batch(torch.from_numpy(rows.blocks([0, 1, 2, 3])))
    assert batch["query_ids"].shape[0] == 4 and batch["passage_ids"].shape[0] == 8
    assert batch["query_ids"].shape[1] % 16 == 0 and batch["query_ids"].shape[1] <= batch["passage_ids"].shape[1]
    assert bool(batch["query_mask"].sum(1).gt(0).all()) and bool(batch["passage_mask"].sum(1).gt(0).all())
    expected = encode_texts(tok, [summary["examples"][0]["query"]], 32)[0]  # the first example is row 0's pair
    assert rows.blocks([0])[0, : len(expected)].tolist() == expected
    assert (rows.blocks([0])[0, len(expected) : 32] == objective.pad_id).all()


def test_title_share_repeats_heading_pairs_up_to_the_share():
    from selfsup.pairs.rows import with_title_share

    pairs = [Pair("title", f"h{i}", "p", i, i) for i in range(3)] + [Pair("ict", f"s{i}", "p", i, i) for i in range(57)]
    out = with_title_share(pairs, 0.2)
    titles = [p for p in out if p.kind == "title"]
    assert out[:60] == pairs and abs(len(titles) / len(out) - 0.2) < 0.01
    assert {p.query for p in titles} == {"h0", "h1", "h2"}  # the same headings, repeated
    assert with_title_share(pairs, 0.01) == pairs  # already above the share: unchanged
