"""Documents open with BOS for tokenizers whose models expect it (Gemma, Llama), with EOS otherwise,
in packing and in evaluation alike."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from selfsup.evaluation.bits_per_byte import document_sequences
from selfsup.pack.pack import join_documents
from selfsup.tokens import document_encoder, document_opener, special_ids

TEXTS = ["the quick brown fox jumps over the lazy dog"] * 20


def _tokenizer(bos_template: bool) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=60, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    if bos_template:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def test_bos_opens_documents_only_where_the_tokenizer_puts_it_before_text():
    with_bos, without = _tokenizer(True), _tokenizer(False)
    assert document_opener(with_bos) == with_bos.bos_token_id
    assert document_opener(without) is None
    ids = special_ids(with_bos)
    seqs, _, _ = document_sequences(TEXTS[:2], document_encoder(with_bos), ids["eos"], 10_000, document_opener(with_bos))
    assert all(s[0] == ids["bos"] and s[-1] == ids["eos"] and s.count(ids["bos"]) == 1 for s in seqs)
    seqs, _, _ = document_sequences(TEXTS[:2], document_encoder(without), ids["eos"], 10_000, document_opener(without))
    assert all(s[0] == ids["eos"] for s in seqs)


def test_packing_puts_the_opener_before_each_document_and_eos_after():
    chunk = join_documents([[5, 6], [], [7]], eos=2, dtype=np.dtype(np.uint16), opener=1)
    assert chunk.tokens.tolist() == [1, 5, 6, 2, 1, 7, 2] and chunk.lengths.tolist() == [4, 3] and chunk.skipped_empty == 1
    plain = join_documents([[5, 6], [7]], eos=2, dtype=np.dtype(np.uint16))
    assert plain.tokens.tolist() == [5, 6, 2, 7, 2]
