"""fim: the rewrite is reversible for any document and cut; blocks keep their shape."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from selfsup.objectives.fim import FillInTheMiddle, fim_inverse

IDS = {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "mask": 4, "fim_prefix": 5, "fim_middle": 6, "fim_suffix": 7}
FIM = FillInTheMiddle(IDS, fim_rate=1.0)


@settings(max_examples=300, deadline=None)
@given(doc=st.lists(st.integers(40, 999), max_size=60), a=st.integers(0, 60), b=st.integers(0, 60), spm=st.booleans())
def test_inverse_reconstructs_the_document_exactly(doc, a, b, spm):
    lo, hi = sorted((min(a, len(doc)), min(b, len(doc))))
    rewritten = FIM.transform(doc, lo, hi, spm=spm)
    assert len(rewritten) == len(doc) + 3
    assert fim_inverse(rewritten, 5, 6, 7) == doc


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_block_transform_keeps_shape_and_whole_documents_invert(seed):
    """Every document piece that is complete inside the (cut back) block inverts to the original."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(40, 999, (4, 96), generator=g)
    blocks[:, [10, 40, 70]] = 2
    out = FIM.transform_blocks(blocks, torch.Generator().manual_seed(seed))
    assert out.shape == blocks.shape
    for before, after in zip(blocks.tolist(), out.tolist()):
        pieces_before = " ".join(map(str, before)).split(" 2 ")
        pieces_after = " ".join(map(str, after)).split(" 2 ")
        for x, y in zip(pieces_before[:-1], pieces_after[:-1]):  # the last piece may be cut
            assert fim_inverse([int(t) for t in y.split()], 5, 6, 7) == [int(t) for t in x.split()]


def test_rates_are_respected():
    """fim_rate 0 is the identity; at fim_rate 0.5 about half the pieces start with <fim_prefix>,
    and about half of those are SPM (start <fim_prefix><fim_suffix>)."""
    blocks = torch.randint(40, 999, (200, 64), generator=torch.Generator().manual_seed(0))
    blocks[:, 31] = 2
    assert torch.equal(FillInTheMiddle(IDS, fim_rate=0.0).transform_blocks(blocks, torch.Generator()), blocks)
    out = FillInTheMiddle(IDS, fim_rate=0.5, spm_rate=0.5).transform_blocks(blocks, torch.Generator().manual_seed(1))
    firsts = out[:, 0]
    rewritten = (firsts == 5).float().mean().item()
    assert 0.4 < rewritten < 0.6
    spm = ((firsts == 5) & (out[:, 1] == 7)).float().sum().item() / max((firsts == 5).sum().item(), 1)
    assert 0.35 < spm < 0.65


def test_missing_sentinels_is_an_actionable_error():
    import pytest

    with pytest.raises(ValueError, match="fim_prefix"):
        FillInTheMiddle({"eos": 2})
