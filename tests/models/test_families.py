"""Each objective builds its model family; checkpoints reload through load_pretrained."""

import pytest
import torch

from selfsup.models import build_model, load_pretrained

IDS = {"pad": 0, "bos": 1, "eos": 2, "mask": 4}


@pytest.mark.parametrize("objective, cls", [("fim", "LlamaForCausalLM"), ("span", "T5ForConditionalGeneration"),
                                             ("contrastive", "BertModel"), ("tsdae", "EncoderDecoderModel")])
def test_family_and_reload(tmp_path, objective, cls):
    torch.manual_seed(0)
    model = build_model(objective, "tiny", vocab_size=300, seq_len=64, special_ids=IDS).eval()
    assert type(model).__name__ == cls
    model.save_pretrained(tmp_path)
    again = load_pretrained(tmp_path, objective).eval()
    x = torch.randint(5, 300, (1, 9))
    kw = {"decoder_input_ids": x[:, :3]} if objective in ("span", "tsdae") else {}
    out_a, out_b = model(input_ids=x, **kw), again(input_ids=x, **kw)
    a = getattr(out_a, "logits", None) if objective != "contrastive" else out_a.last_hidden_state
    b = getattr(out_b, "logits", None) if objective != "contrastive" else out_b.last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)


def test_contrastive_encoder_has_dropout_for_simcse():
    model = build_model("contrastive", "tiny", vocab_size=300, seq_len=64, special_ids=IDS)
    assert model.config.hidden_dropout_prob == 0.1
