"""mlm: selection rate and the 80/10/10 split match the definition; specials are never touched."""

import math

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
from tokenizers import Tokenizer, models, pre_tokenizers

from selfsup.objectives.mlm import IGNORE, MaskedLM

SPECIAL = {"pad": 0, "bos": 1, "eos": 2, "unk": 3, "mask": 4}
V = 500


def _blocks(n=400, t=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(5, V, (n, t), generator=g)
    b[:, ::17] = SPECIAL["eos"]  # document ends scattered through the blocks
    return b


def _within(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_selection_rate_and_replacement_split_match_definition():
    """Over ~50k tokens: 15% of ordinary tokens selected; of those 80% mask, 10% random, 10% kept
    (each within 5 standard errors)."""
    obj = MaskedLM(SPECIAL, V)
    blocks = _blocks()
    inputs, labels = obj.mask(blocks, torch.Generator().manual_seed(1))
    ordinary = blocks != SPECIAL["eos"]
    selected = labels != IGNORE
    n_ord, n_sel = int(ordinary.sum()), int(selected.sum())
    assert _within(n_sel / n_ord, 0.15, n_ord)
    masked = int((inputs[selected] == SPECIAL["mask"]).sum())
    kept = int((inputs[selected] == blocks[selected]).sum())
    random_ = n_sel - masked - kept
    # a random replacement can draw the original token (1 in V-5): count it with "kept"'s expectation
    assert _within(masked / n_sel, 0.8, n_sel)
    assert _within(random_ / n_sel, 0.1 * (1 - 1 / (V - 5)), n_sel)
    assert _within(kept / n_sel, 0.1 + 0.1 / (V - 5), n_sel)


def test_specials_never_selected_and_random_tokens_never_special():
    """EOS/pad/mask positions are never selected; random replacements are ordinary tokens; labels
    hold the original token at selected positions only."""
    obj = MaskedLM(SPECIAL, V, mask_rate=0.5, mask_replace=0.0, random_replace=1.0)
    blocks = _blocks(seed=3)
    inputs, labels = obj.mask(blocks, torch.Generator().manual_seed(2))
    special = blocks == SPECIAL["eos"]
    assert (labels[special] == IGNORE).all()
    assert torch.equal(inputs[special], blocks[special])
    sel = labels != IGNORE
    assert torch.equal(labels[sel], blocks[sel])
    assert (inputs[sel] >= 5).all()


def test_same_generator_seed_same_masks():
    """Masks are a function of the generator seed alone (what makes resume exact)."""
    obj = MaskedLM(SPECIAL, V)
    b = _blocks(n=4)
    a1 = obj.mask(b, torch.Generator().manual_seed(7))
    a2 = obj.mask(b, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a1, a2))


def test_rates_agree_with_transformers_collator():
    """Our selection and mask shares agree with DataCollatorForLanguageModeling on the same input."""
    vocab = {f"t{i}": i for i in range(V)}
    for name, i in [("<pad>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("<mask>", 4)]:
        vocab.pop(f"t{i}")
        vocab[name] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                 unk_token="<unk>", mask_token="<mask>")
    blocks = _blocks(n=200)
    torch.manual_seed(0)
    ref = DataCollatorForLanguageModeling(hf, mlm_probability=0.15)
    ref_batch = ref.torch_call([{"input_ids": row.tolist()} for row in blocks])
    ours_in, ours_lab = MaskedLM(SPECIAL, V).mask(blocks, torch.Generator().manual_seed(0))
    ordinary = int((blocks != SPECIAL["eos"]).sum())
    ref_sel = ref_batch["labels"] != IGNORE
    ours_sel = ours_lab != IGNORE
    assert abs(int(ref_sel.sum()) - int(ours_sel.sum())) < 6 * math.sqrt(ordinary * 0.15 * 0.85)
    assert (ref_batch["labels"][blocks == SPECIAL["eos"]] == IGNORE).all()
    ref_mask_share = float((ref_batch["input_ids"][ref_sel] == 4).float().mean())
    ours_mask_share = float((ours_in[ours_sel] == 4).float().mean())
    assert abs(ref_mask_share - ours_mask_share) < 0.03


def _bert_and_batch():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=128,
                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    objective = MaskedLM(SPECIAL, V)
    batch = objective.make_batch(_blocks(n=4, t=64), torch.Generator().manual_seed(1))
    return model, objective, batch


def _loss_and_grads(objective, model, batch):
    model.zero_grad()
    loss = objective.compute_loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_head_on_labelled_rows_only_gives_the_same_loss_and_gradients():
    """Scoring only the labelled positions is a speed-up, not a different objective: the loss and
    every parameter's gradient equal transformers' full-sequence masked-LM loss."""
    model, objective, batch = _bert_and_batch()
    assert (batch["labels"] == IGNORE).float().mean() > 0.7  # most rows are unlabelled: they are skipped
    full_loss, full_grads = _loss_and_grads(objective, model, batch)
    objective.predict_masked_only = True
    sparse_loss, sparse_grads = _loss_and_grads(objective, model, batch)
    torch.testing.assert_close(sparse_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert sparse_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(sparse_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_head_on_labelled_rows_only_under_lora():
    """With LoRA adapters (a peft wrapper around the model) the labelled-rows path reaches the HF model
    inside and gives the wrapper's own loss."""
    from peft import LoraConfig, get_peft_model

    model, objective, batch = _bert_and_batch()
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["query", "value"]))
    full = objective.compute_loss(lora, batch)
    objective.predict_masked_only = True
    torch.testing.assert_close(objective.compute_loss(lora, batch), full, rtol=1e-5, atol=1e-6)
