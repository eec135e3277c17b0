"""clm: labels are the block; document masking isolates documents inside a block."""

import torch

from selfsup.models import build_model
from selfsup.objectives.clm import CausalLM, document_causal_mask

EOS = 2


def test_segments_and_positions_restart_after_eos():
    """The EOS that ends a document opens the next segment, whose positions restart at 0."""
    blocks = torch.tensor([[7, 8, EOS, 9, 10, 11, EOS, 12]])
    mask, pos = document_causal_mask(blocks, EOS)
    assert pos.tolist() == [[0, 1, 0, 1, 2, 3, 0, 1]]
    m = mask[0, 0]
    assert m[4].tolist() == [False, False, True, True, True, False, False, False]  # token 10 sees EOS, 9, itself
    assert not m.triu(1).any()  # causal


def test_later_document_logits_do_not_depend_on_earlier_documents():
    """Changing an earlier document in a block leaves a later document's logits unchanged,
    and equal to scoring that document alone (as [EOS] + text)."""
    torch.manual_seed(0)
    model = build_model("clm", "tiny", vocab_size=300, seq_len=32, special_ids={"bos": 1, "eos": EOS, "pad": 0}).eval()
    obj = CausalLM(eos_id=EOS, document_mask=True)
    block = torch.randint(5, 300, (1, 24))
    block[0, 9] = EOS
    other = block.clone()
    other[0, :9] = torch.randint(5, 300, (9,))
    with torch.no_grad():
        a = model(**{k: v for k, v in obj.make_batch(block).items() if k != "labels"}).logits
        b = model(**{k: v for k, v in obj.make_batch(other).items() if k != "labels"}).logits
        alone = model(input_ids=block[:, 9:]).logits
    assert torch.equal(a[0, 9:], b[0, 9:])
    assert torch.allclose(a[0, 9:], alone[0], atol=1e-5)
    assert not torch.allclose(a[0, :9], b[0, :9])


def test_without_document_mask_labels_are_inputs():
    """Plain clm: labels are the block itself (the model shifts), nothing ignored."""
    blocks = torch.randint(5, 100, (2, 16))
    batch = CausalLM(eos_id=EOS, document_mask=False).make_batch(blocks)
    assert set(batch) == {"input_ids", "labels"} and torch.equal(batch["labels"], blocks)
