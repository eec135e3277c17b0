"""contrastive — passage embeddings by InfoNCE over in-batch negatives (SimCSE-style).

What it needs: packed blocks of token ids whose documents end with EOS, and an encoder without a
head (`AutoModel`, a BERT preset). The embedding of a passage is the mean of the encoder's last
hidden states over its tokens (mean pooling, padding excluded): that is what export documents
and what sentence-transformers' `1_Pooling` reproduces.

What labels it makes: none; the batch pairs itself. From each block one passage of
`passage_tokens` tokens is cut from its longest document piece, and its positive is
- `positives = "neighbours"`: the next `passage_tokens` tokens of the same document,
  when the piece is long enough (else the passage itself, as below); or
- `positives = "dropout"`: the very same passage, so the only difference between the two views
  is dropout noise (Gao et al. 2021, SimCSE; needs `[model] dropout` > 0 — the contrastive
  preset uses 0.1 when it is left at 0).
- `positives = "structure"` (the default): rows are not packed blocks but mined triples
  (pairs/rows.py): a query a person might type (a heading, a first sentence, a sentence of the
  passage), the passage it belongs to, and a BM25 hard negative from another document. Each
  query ranks all positives and all hard negatives of the batch (the MultipleNegativesRanking
  loss of sentence-transformers, as DPR and E5 train): 2B − 1 negatives per query, one of them
  chosen to be hard.
With neighbours or dropout, row i's positive is row i of the second half; every other row's
positive is a negative. The loss is the symmetric cross-entropy of cosine similarities /
`temperature` (default 0.05).

How it relates to the others: `mlm` teaches an encoder words; this teaches it which passages
belong together, which is what retrieval needs. `tsdae` is the other unsupervised route to
embeddings (reconstruct a sentence from its vector); both evaluate by retrieval.

Example (batch of 2 blocks, passage_tokens=3):
    input_ids = [[a b c], [x y z],   [d e f], [u v w]]   (anchors, then their neighbours)
    similarity (2 × 2) → cross-entropy with targets [0, 1]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WIDTH_STEP = 16  # mined rows are cut to a multiple of this many tokens


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) → (B, H): mean over the tokens the mask keeps."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


def encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The embedding encoder: the model itself, or the encoder half of a TSDAE encoder-decoder."""
    decoder = getattr(model, "decoder", None)
    return model.encoder if decoder is not None and hasattr(model, "encoder") else model


def embed(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) → (B, H) float32 mean-pooled passage embeddings."""
    hidden = encoder_of(model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return mean_pool(hidden.float(), attention_mask)


def longest_pieces(blocks: torch.Tensor, special: set[int]) -> list[list[int]]:
    """Per block, its longest run of ordinary tokens (the text of one document, or part of it)."""
    out = []
    for row in blocks.tolist():
        best, current = [], []
        for t in row + [None]:
            if t is None or t in special:
                if len(current) > len(best):
                    best = current
                current = []
            else:
                current.append(t)
        out.append(best)
    return out


def pad_rows(rows: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        r = r[:width]
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


class Contrastive:
    name = "contrastive"

    def __init__(self, special_ids: dict[str, int | None], *, passage_tokens: int = 64, temperature: float = 0.05,
                 positives: str = "structure") -> None:
        self.special = {int(i) for i in special_ids.values() if i is not None}
        self.pad_id = int(special_ids["pad"] if special_ids.get("pad") is not None else special_ids["eos"])
        self.passage_tokens = passage_tokens
        self.temperature = temperature
        self.positives = positives

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """(B, T) → input_ids / attention_mask (2B, passage_tokens): anchors then positives; or, for
        mined rows (B, 3 × passage_tokens), (3B, passage_tokens): queries, positives, negatives."""
        if self.positives == "structure":
            return self._triples(blocks)
        m = self.passage_tokens
        pieces = longest_pieces(blocks, self.special)
        draws = torch.rand(len(pieces), generator=generator).tolist()
        anchors, positives = [], []
        for piece, u in zip(pieces, draws):
            piece = piece or [self.pad_id]
            if self.positives == "neighbours" and len(piece) >= 2 * m:
                s = int(u * (len(piece) - 2 * m + 1))
                anchors.append(piece[s : s + m])
                positives.append(piece[s + m : s + 2 * m])
            else:  # too short for two spans, or SimCSE: the same tokens, different dropout
                s = int(u * max(len(piece) - m + 1, 1))
                anchors.append(piece[s : s + m])
                positives.append(piece[s : s + m])
        ids, mask = pad_rows(anchors + positives, m, self.pad_id)
        return {"input_ids": ids.to(blocks.device), "attention_mask": mask.to(blocks.device)}

    def _triples(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3 × L) mined rows → queries (B, Wq) and passages (2B, Wp): positives, then negatives.
        Each is cut to the batch's longest, rounded up to a multiple of WIDTH_STEP (queries are a
        line, passages a paragraph: padding both to L would double the work; few distinct widths
        keep a compiled model from recompiling often)."""
        parts = rows.reshape(len(rows), 3, -1)
        queries, passages = parts[:, 0], torch.cat([parts[:, 1], parts[:, 2]])
        out = {}
        for name, ids in (("query", queries), ("passage", passages)):
            mask = (ids != self.pad_id).long()
            width = min(ids.shape[1], -(-int(mask.sum(1).max()) // WIDTH_STEP) * WIDTH_STEP)
            out[f"{name}_ids"], out[f"{name}_mask"] = ids[:, :width], mask[:, :width]
        return out

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.positives == "structure":
            queries = embed(model, batch["query_ids"], batch["query_mask"])  # (B, H)
            passages = embed(model, batch["passage_ids"], batch["passage_mask"])  # (2B, H)
            return ranking_loss(queries, passages, self.temperature)
        emb = embed(model, batch["input_ids"], batch["attention_mask"])  # (2B, H)
        a, b = emb.chunk(2)
        return info_nce(a, b, self.temperature)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `a` should pick row i of `b` among all rows, and vice versa."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (B, B) cosine similarities
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def ranking_loss(queries: torch.Tensor, passages: torch.Tensor, temperature: float) -> torch.Tensor:
    """Query i should pick passage i among all `passages` (its positive first, then every other
    row's positive and every hard negative): cross-entropy over cosine similarities / temperature."""
    q, p = F.normalize(queries, dim=-1), F.normalize(passages, dim=-1)
    logits = q @ p.T / temperature  # (B, 2B)
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))
