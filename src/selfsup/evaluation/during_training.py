"""Domain and general bits per byte while training: the trade-off as it happens.

Continued pretraining buys domain skill with general skill. Measured only at the end, the report
shows where the run landed; measured every `eval_every` steps it shows the path, and whether a
shorter run would have kept more of the base's general ability for most of the domain gain.

`TradeoffProbe.for_run(...)` is built once before the loop: it fixes a small sample (at most
`[eval] during_training_tokens` tokens each) of held-out domain text (the first validation
blocks) and of the general text sets (`[eval] texts`), encoded once. `measure(model)` scores
both and returns `{"domain_bpb": …, "general_bpb": …}` (a key is absent when its sample is), which
the loop logs in metrics.jsonl next to `val_loss`. Bytes of a validation block are the bytes its
tokens stand for (exact for byte-level BPE, see tokens/byte_lengths.py).

clm and fim are scored by next-token loss; mlm by the loss of masked tokens under a fixed mask
(the same questions every time). Other objectives have no bits per byte: nothing is measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from selfsup.evaluation.bits_per_byte import document_sequences, score_clm
from selfsup.evaluation.masked import heldout_blocks, masked_questions, score_masked
from selfsup.evaluation.text_sets import read_text_sets, spread
from selfsup.tokens import document_encoder, document_opener, special_ids, token_byte_lengths

SEED = 4321
MAX_GENERAL_PASSAGES = 64


@dataclass
class _Sample:
    seqs: list[list[int]]
    n_bytes: int
    questions: list = field(default_factory=list)  # mlm: fixed (inputs, labels) pairs


@dataclass
class TradeoffProbe:
    objective: str
    seq_len: int
    pad_id: int
    byte_lengths: np.ndarray
    device: torch.device
    amp_dtype: torch.dtype | None
    samples: dict[str, _Sample]  # "domain_bpb" / "general_bpb" → what is scored

    @classmethod
    def for_run(cls, recipe, tokenizer, val, device, amp_dtype, vocab_size: int, *, enabled: bool = True) -> TradeoffProbe:
        """Fix the samples for this run; `val` is the validation TokenShards (or None).

        `enabled=False` (processes other than the first, or FSDP, whose sharded module cannot run
        a forward pass on one process alone) gives a probe that measures nothing.
        """
        budget = recipe.eval.during_training_tokens
        objective = recipe.model_objective  # every decoder run (span on a decoder, a mix) is scored as clm
        ids = special_ids(tokenizer)
        probe = cls(objective, val.seq_len if val is not None else recipe.pack.seq_len, ids["pad"],
                    token_byte_lengths(tokenizer), device, amp_dtype, {})
        if not enabled or budget <= 0 or objective not in ("clm", "fim", "mlm"):
            return probe
        if len(probe.byte_lengths) < vocab_size:
            probe.byte_lengths = np.pad(probe.byte_lengths, (0, vocab_size - len(probe.byte_lengths)))
        if val is not None and len(val) > 0:
            n_blocks = min(len(val), math.ceil(budget / val.seq_len))
            blocks = val.blocks(np.arange(n_blocks)).astype(np.int64)
            seqs = [list(map(int, b)) for b in blocks]
            probe.samples["domain_bpb"] = _Sample(seqs, int(probe.byte_lengths[blocks[:, 1:]].sum()))
        if recipe.eval.texts:
            passages = [p for s in read_text_sets(recipe.eval.texts, MAX_GENERAL_PASSAGES) for p in s.passages]
            passages = spread(passages, MAX_GENERAL_PASSAGES)
            seqs, _, n_bytes = document_sequences(passages, document_encoder(tokenizer), ids["eos"], budget, document_opener(tokenizer))
            probe.samples["general_bpb"] = _Sample(seqs, n_bytes)
        if objective == "mlm":
            from selfsup.objectives import get_objective

            masker = get_objective(recipe.objective, ids, vocab_size)
            for sample in probe.samples.values():
                sample.questions = masked_questions(heldout_blocks(sample.seqs, probe.seq_len), masker, SEED)
        return probe

    def measure(self, model) -> dict[str, float]:
        """Bits per byte of each fixed sample under `model` (left in eval mode: the caller restores train)."""
        out = {}
        for key, sample in self.samples.items():
            if self.objective == "mlm":
                score, _ = score_masked(model, sample.questions, self.byte_lengths, batch_size=8,
                                        device=self.device, amp_dtype=self.amp_dtype)
            else:
                score = score_clm(model, sample.seqs, sample.n_bytes, seq_len=self.seq_len, batch_size=8,
                                  device=self.device, amp_dtype=self.amp_dtype, pad_id=self.pad_id)
            out[key] = score.metrics()["bits_per_byte"]
        return out
