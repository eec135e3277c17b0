"""How a step's global batch is shared by processes: every row once, in order, micro-batches cut by rows
where they do not divide, and pieces that add up to the micro-batch's loss."""

from __future__ import annotations

import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.objectives import CausalLM, MaskedLM, batch_rows, labelled_tokens
from selfsup.train.distributed import World, check_split


@pytest.mark.parametrize("grad_accum,batch_size,size", [(4, 2, 2), (1, 4, 2), (3, 2, 2), (2, 6, 4), (3, 4, 6), (1, 8, 8)])
def test_every_row_of_the_step_is_one_ranks_once_in_order(grad_accum, batch_size, size):
    """Joined rank after rank, the pieces are the step's rows in order; each rank gets as many rows."""
    rows, counts = [], []
    for rank in range(size):
        pieces = World(rank=rank, size=size).my_pieces(grad_accum, batch_size)
        rows += [micro * batch_size + r for micro, lo, hi in pieces for r in range(lo, hi)]
        counts.append(sum(hi - lo for _, lo, hi in pieces))
        assert all(0 <= lo < hi <= batch_size for _, lo, hi in pieces)
    assert rows == list(range(grad_accum * batch_size))
    assert len(set(counts)) == 1


def test_whole_micro_batches_where_they_divide():
    """grad_accum a multiple of the world size: each rank computes whole micro-batches, as before."""
    assert World(rank=1, size=2).my_pieces(4, 3) == [(2, 0, 3), (3, 0, 3)]
    assert World(rank=0, size=1).my_pieces(2, 5) == [(0, 0, 5), (1, 0, 5)]


def test_split_refusals_name_the_fields_and_the_fix():
    """A global batch that does not divide is refused with the numbers; contrastive keeps micro-batches whole."""
    check_split(World(size=2), grad_accum=1, batch_size=4)
    with pytest.raises(ConfigError, match=r"batch_size × grad_accum = 3 × 1 = 3 blocks.*multiple of 2.*batch_size = 4"):
        check_split(World(size=2), grad_accum=1, batch_size=3)
    with pytest.raises(ConfigError, match=r"contrastive.*grad_accum to a multiple of 2.*batch_size to 2"):
        check_split(World(size=2), grad_accum=1, batch_size=4, objectives=["contrastive"])
    check_split(World(size=2), grad_accum=2, batch_size=4, objectives=["contrastive"])


def test_pieces_weighted_by_labelled_tokens_add_up_to_the_micro_batch_loss():
    """mlm: two halves of a micro-batch hold different numbers of masked tokens; their losses weighted by
    their shares equal the whole micro-batch's mean loss, and the masks are the whole micro-batch's."""
    torch.manual_seed(0)
    blocks = torch.randint(5, 60, (4, 32))
    objective = MaskedLM({"pad": 0, "bos": 1, "eos": 2, "unk": 3, "mask": 4}, vocab_size=64)
    batch = objective.make_batch(blocks, torch.Generator().manual_seed(1))
    logits = torch.randn(4, 32, 64)

    def loss(b, rows):
        return torch.nn.functional.cross_entropy(logits[rows].transpose(1, 2), b["labels"], ignore_index=-100)

    whole = labelled_tokens(objective, batch)
    halves = [batch_rows(objective, batch, lo, hi) for lo, hi in ((0, 2), (2, 4))]
    counts = [labelled_tokens(objective, h) for h in halves]
    assert sum(counts) == whole and counts[0] != counts[1]
    assert torch.equal(torch.cat([h["labels"] for h in halves]), batch["labels"])
    total = sum(c / whole * loss(h, slice(lo, hi)) for c, h, (lo, hi) in zip(counts, halves, ((0, 2), (2, 4))))
    torch.testing.assert_close(total, loss(batch, slice(0, 4)))


def test_rows_of_a_packed_batch_get_their_own_document_bounds():
    """The packed form's bounds run over the flattened batch: rows taken out get bounds made for them."""
    ids = torch.randint(3, 50, (4, 16))
    ids[:, 5] = 2
    clm = CausalLM(eos_id=2)
    clm.packed_attention = True
    rows = batch_rows(clm, clm.make_batch(ids), 1, 3)
    direct = clm.make_batch(ids[1:3])
    assert rows.keys() == direct.keys()
    assert all(torch.equal(rows[k], direct[k]) for k in rows)
    assert labelled_tokens(clm, rows) == 2 * 15  # position t is scored on token t + 1
