"""tsdae — denoising auto-encoder for sentence embeddings: delete words, rebuild from one vector.

What it needs: packed blocks of token ids, the tokenizer's vocabulary (for word boundaries,
`words.py`) and an encoder-decoder whose decoder cross-attends to a *single* vector: the
mean-pooled encoder output (Wang et al. 2021, TSDAE). The preset is a transformers
`EncoderDecoderModel` of a BERT encoder and a BERT decoder with cross-attention; only the encoder
is exported (an `AutoModel` with mean pooling, like `contrastive`). The paper ties encoder and
decoder weights; transformers 5 no longer ties them through `tie_encoder_decoder`, so here the
decoder has its own weights (it is thrown away at export).

What labels it makes: from each block, a passage of `passage_tokens` tokens (cut from its longest
document piece); the encoder input keeps each word with probability 1 − `deletion_rate` (0.6
deleted, the paper's best; at least one word stays); the decoder reads [EOS] + passage and
predicts passage + [EOS], teacher-forced, attending only to the passage vector. Loss: mean
cross-entropy over the passage tokens.

How it relates to the others: `contrastive` learns embeddings by telling passages apart;
TSDAE learns them by having to say the whole passage from its vector, which the paper found to
adapt better to a new domain. Like `mlm` it corrupts words; unlike it, the answer must pass
through one vector.

Example (deletion_rate 0.6):
    passage = [the Ġcat Ġsat Ġon Ġthe Ġmat]
    encoder = [Ġcat Ġmat]
    decoder = [</s> the Ġcat Ġsat Ġon Ġthe Ġmat] → [the Ġcat Ġsat Ġon Ġthe Ġmat </s>]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.objectives.contrastive import longest_pieces, mean_pool, pad_rows
from selfsup.objectives.words import WordBoundaries, word_index

IGNORE = -100


class TSDAE:
    name = "tsdae"

    def __init__(self, special_ids: dict[str, int | None], words: WordBoundaries, *, passage_tokens: int = 64,
                 deletion_rate: float = 0.6) -> None:
        self.special = {int(i) for i in special_ids.values() if i is not None}
        self.eos_id = int(special_ids["eos"])
        self.pad_id = int(special_ids["pad"] if special_ids.get("pad") is not None else self.eos_id)
        self.words = words
        self.passage_tokens = passage_tokens
        self.deletion_rate = deletion_rate

    def delete_words(self, passage: list[int], generator: torch.Generator | None = None) -> list[int]:
        """The passage with each word kept with probability 1 − deletion_rate (at least one word kept)."""
        ids = torch.tensor([passage], dtype=torch.long)
        starts = self.words.starts(ids)
        word = word_index(starts)[0]  # (T,)
        n_words = int(word[-1]) + 1
        keep = torch.rand(n_words, generator=generator) >= self.deletion_rate
        if not keep.any():
            keep[int(torch.randint(n_words, (1,), generator=generator))] = True
        return [t for t, w in zip(passage, word.tolist()) if keep[w]]

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        m = self.passage_tokens
        pieces = longest_pieces(blocks, self.special)
        draws = torch.rand(len(pieces), generator=generator).tolist()
        passages = []
        for piece, u in zip(pieces, draws):
            piece = piece or [self.pad_id]
            s = int(u * max(len(piece) - m + 1, 1))
            passages.append(piece[s : s + m])
        noisy = [self.delete_words(p, generator) for p in passages]
        ids, mask = pad_rows(noisy, m, self.pad_id)
        dec_in, dec_mask = pad_rows([[self.eos_id, *p] for p in passages], m + 1, self.pad_id)
        labels, label_mask = pad_rows([[*p, self.eos_id] for p in passages], m + 1, self.pad_id)
        labels = torch.where(label_mask.bool(), labels, torch.full_like(labels, IGNORE))
        dev = blocks.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "decoder_input_ids": dec_in.to(dev),
                "decoder_attention_mask": dec_mask.to(dev), "decoder_labels": labels.to(dev)}

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        vector = mean_pool(hidden, batch["attention_mask"])[:, None]  # (B, 1, H): the only thing the decoder sees
        logits = model.decoder(
            input_ids=batch["decoder_input_ids"], attention_mask=batch["decoder_attention_mask"],
            encoder_hidden_states=vector,
            encoder_attention_mask=torch.ones(vector.shape[:2], dtype=torch.long, device=vector.device),
        ).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["decoder_labels"].reshape(-1),
                               ignore_index=IGNORE)
