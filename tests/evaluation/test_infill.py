"""Held-out infill questions are whole lines, laid out as fim trains; the one-pass exact match is greedy decoding's."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from selfsup.evaluation.infill import fim_examples, fim_questions, score_fim, score_unigram_fim
from selfsup.tokens import document_encoder, load_tokenizer, special_ids

TEXT = "\n".join([
    "Title of the page",
    "The journal_mode pragma sets how the rollback journal is kept on disk.",
    "short",
    "    sqlite3_prepare_v2(db, sql, -1, &stmt, 0);",
    "A table declared WITHOUT ROWID stores its rows in a clustered index instead.",
    "x" * 200,
    "The last line of the document is here.",
])


def tiny_decoder(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)).eval()


def test_questions_are_whole_lines_with_prefix_and_suffix_around_them(prepared):
    """Each middle is one line of 10–160 characters (never the first: it has no prefix), encoded alone;
    the prompt is [opener] <fim_prefix> prefix <fim_suffix> suffix <fim_middle>; the answer ends with EOS;
    the same seed gives the same questions."""
    tok = load_tokenizer(prepared["tokenizer"])
    ids, enc = special_ids(tok), document_encoder(tok)
    questions = fim_questions([TEXT], enc, ids, 1024, seed=3, per_document=10)
    assert questions == fim_questions([TEXT], enc, ids, 1024, seed=3, per_document=10)
    lines = TEXT.split("\n")
    assert sorted(tok.decode(a[:-1]) for _, a, _ in questions) == sorted([lines[1], lines[3], lines[4], lines[6]])
    for prompt, answer, n_bytes in questions:
        middle = tok.decode(answer[:-1])
        assert answer[-1] == ids["eos"] and n_bytes == len(middle.encode())
        assert prompt[0] == ids["eos"] and prompt[1] == ids["fim_prefix"] and prompt[-1] == ids["fim_middle"]
        s = prompt.index(ids["fim_suffix"])
        before, after = TEXT.split(middle)
        assert tok.decode(prompt[2:s]) == before and tok.decode(prompt[s + 1 : -1]) == after
    assert len(fim_questions([TEXT], enc, ids, 256, seed=3, per_document=2)) == 2


def test_one_pass_exact_match_is_what_greedy_decoding_writes(prepared):
    """A middle equal to the model's own greedy continuation is an exact match; change one token and it is not."""
    tok = load_tokenizer(prepared["tokenizer"])
    ids = special_ids(tok)
    model = tiny_decoder(len(tok))
    prompt, _, _ = fim_questions([TEXT], document_encoder(tok), ids, 256, seed=3, per_document=1)[0]
    greedy = model.generate(torch.tensor([prompt]), max_new_tokens=5, do_sample=False, pad_token_id=ids["pad"])[0, len(prompt):].tolist()
    wrong = [(greedy[0] + 1) % len(tok), *greedy[1:]]
    kw = dict(batch_size=2, device=torch.device("cpu"), amp_dtype=None, pad_id=ids["pad"])
    right = score_fim(model, [(prompt, greedy, 10), (prompt, wrong, 10)], **kw)
    assert right["fim_exact_match"] == 0.5 and right["fim_questions"] == 2 and right["fim_middle_bits_per_byte"] > 0
    unigram = score_unigram_fim(torch.full((len(tok),), -5.0).numpy(), [(prompt, greedy, 10)], [ids["eos"]])
    assert unigram["fim_middle_bits_per_byte"] > 0 and 0 <= unigram["fim_exact_match"] <= 1


def test_prefix_and_suffix_are_clipped_to_fit_the_block(prepared):
    tok = load_tokenizer(prepared["tokenizer"])
    for prompt, answer, _ in fim_questions([TEXT], document_encoder(tok), special_ids(tok), 64, seed=3, per_document=10):
        assert len(prompt) + len(answer) <= 64


def test_examples_show_what_each_model_writes_greedily_and_mark_an_exact_fill(prepared):
    """Each example gives the text around the hidden line, the line, and each model's greedy fill up to
    its EOS: a line equal to the model's own greedy continuation (EOS included) is exact, another is not;
    the same seed draws the same examples."""
    tok = load_tokenizer(prepared["tokenizer"])
    ids = special_ids(tok)
    model = tiny_decoder(len(tok))
    prompt, answer, n_bytes = fim_questions([TEXT], document_encoder(tok), ids, 256, seed=3, per_document=1)[0]
    greedy = model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False, pad_token_id=ids["pad"])[0, len(prompt):].tolist()
    stop_ids = {**ids, "eos": greedy[2]}  # the model "stops" at its third token: its fill is greedy[:2]
    questions = [(prompt, greedy[:3], n_bytes), (prompt, answer, n_bytes)]
    examples = fim_examples({"trained": model}, tok, questions, stop_ids, seed=0, n=5, device=torch.device("cpu"))
    assert examples == fim_examples({"trained": model}, tok, questions, stop_ids, seed=0, n=5, device=torch.device("cpu"))
    assert [e["fills"]["trained"] for e in examples] == [{"text": tok.decode(greedy[:2]), "exact": True},
                                                          {"text": tok.decode(greedy[:2]), "exact": False}]
    middle = tok.decode(answer[:-1])
    before, after = TEXT.split(middle)
    shown = examples[1]
    assert shown["answer"] == middle and shown["before"] and shown["after"]  # the text the prompt holds, cut to 160 characters
    assert before.endswith(shown["before"]) and after.startswith(shown["after"]) and len(shown["after"]) <= 160
