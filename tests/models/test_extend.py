"""Growing a base model's vocabulary for an extended tokenizer: new rows = mean of the old pieces."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from selfsup.models.extend import extend_embeddings

TERMS = [
    {"token": " sqlite3_prepare_v2", "id": 96, "pieces": [5, 17, 42, 8]},
    {"token": " journal_mode", "id": 97, "pieces": [60, 61, 62]},
]


def _tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=tied)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_are_the_mean_of_their_pieces(tied):
    """Each new token's embedding (and, when the head is a separate matrix, its output row) equals the
    mean of its old pieces' rows; a tied head stays tied."""
    model = _tiny_llama(tied)
    emb_before = model.get_input_embeddings().weight.detach().clone()
    head_before = model.get_output_embeddings().weight.detach().clone()
    extend_embeddings(model, TERMS)
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert emb.shape[0] == 98 and head.shape[0] == 98 and model.config.vocab_size == 98
    assert (head is emb) == tied
    for t in TERMS:
        assert torch.allclose(emb[t["id"]], emb_before[t["pieces"]].mean(0), atol=1e-7)
        assert torch.allclose(head[t["id"]], head_before[t["pieces"]].mean(0), atol=1e-7)
    assert torch.equal(emb[:96], emb_before)  # old rows untouched


@pytest.mark.parametrize("tied", [True, False])
def test_logits_of_untouched_text_do_not_change(tied):
    """On text made of old tokens, the resized model gives the old vocabulary exactly the same logits."""
    model = _tiny_llama(tied)
    x = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=x).logits
        extend_embeddings(model, TERMS)
        after = model(input_ids=x).logits
    assert after.shape[-1] == 98
    assert torch.equal(after[..., :96], before)


def test_piece_ids_outside_the_base_are_refused():
    """A term whose pieces the base model has no rows for (a tokenizer extended from another model) is a usage error."""
    from selfsup.errors import UsageError

    with pytest.raises(UsageError, match="piece ids beyond"):
        extend_embeddings(_tiny_llama(True), [{"token": " x", "id": 200, "pieces": [1, 150]}])
