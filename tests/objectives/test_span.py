"""span (T5): lengths as T5 computes them; inputs + targets interleaved by sentinel give the block back."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfsup.objectives.span import SpanCorruption, compute_input_and_target_lengths, span_lengths

IDS = {"pad": 0, "eos": 2, **{f"extra_id_{i}": 8 + i for i in range(32)}}
SPAN = SpanCorruption(IDS)


def test_lengths_match_t5():
    """T5's compute_input_and_target_lengths(512) = (568, 114); our forward map inverts it."""
    assert compute_input_and_target_lengths(512) == (568, 114)
    assert span_lengths(568) == (512, 114)


@settings(max_examples=200, deadline=None)
@given(block=st.lists(st.integers(2, 999).filter(lambda t: not 8 <= t < 40), min_size=2, max_size=200),
       seed=st.integers(0, 2**31 - 1))
def test_interleaving_inputs_and_targets_reconstructs_the_block(block, seed):
    batch = SPAN.make_batch(torch.tensor([block]), torch.Generator().manual_seed(seed))
    inputs, targets = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert (len(inputs), len(targets)) == span_lengths(len(block))  # every block fits exactly
    assert SPAN.reconstruct(inputs, targets) == block


def test_noise_share_and_span_count():
    """Per 256-token block: 38 noise tokens in 13 spans, never at the start; no padding."""
    blocks = torch.randint(40, 999, (8, 256), generator=torch.Generator().manual_seed(0))
    batch = SPAN.make_batch(blocks, torch.Generator().manual_seed(1))
    assert batch["input_ids"].shape == (8, 232) and batch["labels"].shape == (8, 52)
    assert ((batch["labels"] >= 8) & (batch["labels"] < 40)).sum(1).eq(13).all()
    assert (batch["input_ids"][:, 0] == blocks[:, 0]).all()


# ---------------------------------------------------------------- span on a decoder (causal masking)

from selfsup.objectives.span import IGNORE_INDEX, DecoderSpanCorruption  # noqa: E402

DECODER = DecoderSpanCorruption(IDS)
SENTINELS = set(DECODER.sentinels)


@settings(max_examples=200, deadline=None)
@given(doc=st.lists(st.integers(40, 999), min_size=8, max_size=300), seed=st.integers(0, 2**31 - 1))
def test_decoder_layout_moves_the_spans_after_the_text_and_inverts_exactly(doc, seed):
    """A document becomes text-with-sentinels then each sentinel and its span; `inverse` gives it back,
    and the only positions that are not targets are the sentinels standing in the text."""
    from selfsup.objectives.span import random_spans_noise_mask

    noise = random_spans_noise_mask(len(doc), 0.15, 3.0, torch.Generator().manual_seed(seed)).tolist()
    rewritten, is_target = DECODER.corrupt(doc, noise)
    spans = sum(1 for i, n in enumerate(noise) if n and (i == 0 or not noise[i - 1]))
    assert len(rewritten) == len(doc) + 2 * spans
    assert DECODER.inverse(rewritten) == doc
    split = rewritten.index(DECODER.sentinels[0], rewritten.index(DECODER.sentinels[0]) + 1)
    assert [t for t, target in zip(rewritten, is_target) if not target] == [t for t in rewritten[:split] if t in SENTINELS]
    assert all(is_target[split:])


def test_decoder_batches_keep_block_shape_document_boundaries_and_are_seeded():
    """Blocks stay (B, T) with their EOS where documents end (the document mask still applies); labels are
    the ids except the in-text sentinels; the same generator seed gives the same batch."""
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(40, 999, (4, 128), generator=g)
    blocks[:, 60] = 2  # an EOS: two document pieces per row
    a = DECODER.make_batch(blocks, torch.Generator().manual_seed(5))
    b = DECODER.make_batch(blocks, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape == blocks.shape and set(a) == {"input_ids", "labels", "attention_mask", "position_ids"}
    ids, labels = a["input_ids"], a["labels"]
    for row in range(4):
        end = ids[row].tolist().index(2)  # the first document, rewritten, still ends with its EOS
        assert end > 60 and DECODER.inverse(ids[row, :end].tolist()) == blocks[row, :60].tolist()
    ignored = labels == IGNORE_INDEX
    assert ignored.any() and ((labels == ids) | ignored).all()
    assert all(int(t) in SENTINELS for t in ids[ignored])


def test_decoder_span_needs_sentinels_and_says_how_to_get_them():
    import pytest

    with pytest.raises(ValueError, match="tokenizer stage adds them"):
        DecoderSpanCorruption({"eos": 2, "pad": 0})
