"""contrastive and tsdae batches: positives are neighbouring spans of one document; InfoNCE is
low for aligned pairs; TSDAE deletes whole words at the set rate."""

import numpy as np
import torch

from selfsup.objectives.contrastive import Contrastive, info_nce, ranking_loss
from selfsup.objectives.tsdae import TSDAE
from selfsup.objectives.words import SPACE, WORD, WordBoundaries, word_index

IDS = {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "mask": 4}


def test_neighbour_positives_follow_their_anchor():
    blocks = torch.arange(100, 100 + 4 * 64).view(4, 64)
    blocks[:, 50] = 2  # longest piece is 0..49
    batch = Contrastive(IDS, passage_tokens=16, positives="neighbours").make_batch(blocks, torch.Generator().manual_seed(0))
    a, b = batch["input_ids"].chunk(2)
    assert torch.equal(b[:, 0], a[:, -1] + 1)  # the positive starts where the anchor ends
    assert batch["attention_mask"].all()


def test_info_nce_prefers_aligned_pairs():
    x = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    assert info_nce(x, x, 0.05) < 0.01
    assert info_nce(x, x.roll(1, 0), 0.05) > 5


def test_mined_rows_split_into_queries_and_passages_cut_to_their_longest():
    rows = torch.zeros(2, 3, 40, dtype=torch.long)  # pad = 0
    rows[:, 0, :5] = 7  # queries: 5 tokens
    rows[:, 1, :20] = 8  # positives: 20 tokens
    rows[:, 2, :33] = 9  # negatives: 33 tokens
    batch = Contrastive(IDS, passage_tokens=40, positives="structure").make_batch(rows.view(2, 120))
    assert batch["query_ids"].shape == (2, 16) and batch["passage_ids"].shape == (4, 40)  # 33 → 48, capped at 40
    assert batch["query_mask"].sum().item() == 10 and (batch["passage_ids"][:2] == 8).sum().item() == 40
    assert (batch["passage_ids"][2:] == 9).sum().item() == 66


def test_ranking_loss_counts_hard_negatives():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 16, generator=g)
    positives = q + 0.01 * torch.randn(4, 16, generator=g)
    easy = ranking_loss(q, torch.cat([positives, -q]), 0.05)
    hard = ranking_loss(q, torch.cat([positives, q + 0.02 * torch.randn(4, 16, generator=g)]), 0.05)
    assert easy < 0.01 and hard > 0.3  # a negative as close as the positive takes half the probability


def test_tsdae_deletes_whole_words_at_the_rate():
    first = np.full(500, WORD, dtype=np.int8)
    first[40:200] = SPACE
    words = WordBoundaries(first, np.full(500, WORD, dtype=np.int8), np.zeros(500, dtype=bool), list(range(5)))
    obj = TSDAE(IDS, words, passage_tokens=64)
    g = torch.Generator().manual_seed(0)
    kept_words = total_words = 0
    for _ in range(200):
        passage = (torch.randperm(460, generator=g)[:64] + 40).tolist()  # distinct ids: each names its word
        noisy = obj.delete_words(passage, g)
        wid = word_index(words.starts(torch.tensor([passage])))[0].tolist()
        assert noisy == [t for t in passage if t in set(noisy)]  # order kept
        for w in set(wid):
            members = [t in set(noisy) for t, x in zip(passage, wid) if x == w]
            assert all(members) or not any(members)  # whole words only
            kept_words += all(members)
        total_words += len(set(wid))
    assert abs(kept_words / total_words - 0.4) < 0.03
