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
