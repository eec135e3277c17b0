"""mlm whole-word and span masking: rates and the 80/10/10 split within tight statistical bounds,
specials never selected, a word's tokens always selected together; word starts match the
tokenizer's own `word_ids()` on real text."""

import math

import numpy as np
import torch

from selfsup.objectives.mlm import IGNORE, MaskedLM
from selfsup.objectives.words import OTHER, SPACE, WORD, WordBoundaries, word_index

V = 500
SPECIAL = {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "mask": 4, **{f"extra_id_{i}": 8 + i for i in range(32)}}
SPECIAL_IDS = sorted(SPECIAL.values())


def _synthetic_words() -> WordBoundaries:
    """Ids 40..199 start a word (" the"), 200..499 continue one ("ing"); specials are their own words."""
    first = np.full(V, WORD, dtype=np.int8)
    first[40:200] = SPACE
    last = np.full(V, WORD, dtype=np.int8)
    last[:40] = OTHER
    return WordBoundaries(first, last, np.zeros(V, dtype=bool), SPECIAL_IDS)


def _blocks(n=300, t=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(40, V, (n, t), generator=g)
    b[:, ::23] = SPECIAL["eos"]
    return b


def _within(observed, p, n, sigmas=5.0):
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_whole_word_rate_split_and_words_selected_together():
    """Words selected at 15% (±5σ over ~18k words); tokens at 15% (±0.01); every token of a selected
    word is selected, no token of an unselected word is; 80/10/10 per token (±5σ)."""
    words = _synthetic_words()
    obj = MaskedLM(SPECIAL, V, words=words)
    blocks = _blocks()
    inputs, labels = obj.mask(blocks, torch.Generator().manual_seed(1))
    selected = labels != IGNORE
    special = torch.isin(blocks, torch.tensor(SPECIAL_IDS))
    assert not (selected & special).any()

    starts = words.starts(blocks)
    wid = word_index(starts)
    n_words, n_sel_words = 0, 0
    for row in range(len(blocks)):
        for w in torch.unique(wid[row][~special[row]]).tolist():
            sel = selected[row][wid[row] == w]
            assert sel.all() or not sel.any()  # all tokens of a word together
            n_words += 1
            n_sel_words += int(sel.all())
    assert _within(n_sel_words / n_words, 0.15, n_words)
    n_ord = int((~special).sum())
    assert abs(int(selected.sum()) / n_ord - 0.15) < 0.01

    n_sel = int(selected.sum())
    masked = int((inputs[selected] == SPECIAL["mask"]).sum())
    kept = int((inputs[selected] == blocks[selected]).sum())
    n_ordinary_vocab = V - len(SPECIAL_IDS)
    assert _within(masked / n_sel, 0.8, n_sel)
    assert _within((n_sel - masked - kept) / n_sel, 0.1 * (1 - 1 / n_ordinary_vocab), n_sel)
    assert not torch.isin(inputs[selected & (inputs != blocks) & (inputs != SPECIAL["mask"])], torch.tensor(SPECIAL_IDS)).any()


def test_span_masking_selects_contiguous_whole_words_near_the_rate():
    """Spans of whole words: no word half-selected, specials never, token rate within [0.11, 0.16]
    (overlapping spans merge, so a little under mask_rate) and spans average > 2 words."""
    words = _synthetic_words()
    obj = MaskedLM(SPECIAL, V, words=words, mask_spans=True)
    blocks = _blocks(seed=4)
    selected = obj.select(blocks, torch.Generator().manual_seed(5))
    special = torch.isin(blocks, torch.tensor(SPECIAL_IDS))
    assert not (selected & special).any()
    wid = word_index(words.starts(blocks))
    runs, words_in_runs = 0, 0
    for row in range(len(blocks)):
        sel_words = sorted(set(wid[row][selected[row]].tolist()))
        for w in sel_words:
            assert selected[row][(wid[row] == w) & ~special[row]].all()
        runs += sum(1 for i, w in enumerate(sel_words) if i == 0 or sel_words[i - 1] != w - 1)
        words_in_runs += len(sel_words)
    rate = int(selected.sum()) / int((~special).sum())
    assert 0.11 <= rate <= 0.16
    assert words_in_runs / runs > 2.0


def test_word_starts_agree_with_the_tokenizers_word_ids(prepared):
    """On real text, word starts read from token ids agree with the byte-level BPE's own
    `word_ids()` for ≥ 99% of non-whitespace tokens (whitespace runs may split differently)."""
    from pydoc_data.topics import topics

    from selfsup.tokens import load_tokenizer, special_ids

    tok = load_tokenizer(prepared["tokenizer"])
    words = WordBoundaries.from_tokenizer(tok, len(tok), [i for i in special_ids(tok).values() if i is not None])
    agree = total = 0
    for name in sorted(topics)[:20]:
        enc = tok(topics[name][:2000])
        ours = words.starts(torch.tensor([enc["input_ids"]]))[0].tolist()
        wid = enc.word_ids()
        for i, t in enumerate(enc["input_ids"]):
            if tok.convert_ids_to_tokens(t).strip("ĠĊĉ") == "":
                continue
            total += 1
            agree += ours[i] == (i == 0 or wid[i] != wid[i - 1])
    assert agree / total >= 0.99


def test_get_objective_defaults_to_whole_words(prepared):
    from selfsup.config import ObjectiveConfig
    from selfsup.objectives import get_objective
    from selfsup.tokens import load_tokenizer, special_ids

    tok = load_tokenizer(prepared["tokenizer"])
    obj = get_objective(ObjectiveConfig(name="mlm"), special_ids(tok), len(tok))
    assert obj.words is not None and not obj.mask_spans
