"""fim — fill-in-the-middle: reorder a document so a decoder learns to write a missing middle.

What it needs: packed blocks whose documents end with EOS, and a tokenizer with the sentinels
`<fim_prefix>`, `<fim_middle>`, `<fim_suffix>` (every tokenizer selfsup trains reserves them at
ids 5–7, whatever the objective, so one tokenizer serves clm, fim and the rest; a reused base
tokenizer that lacks them, as SmolLM2's GGUF tokenizer does, gets them from the tokenizer stage,
tokens/extend.py `add_sentinels`, each row starting as the mean of its spelling's). Any decoder
(`AutoModelForCausalLM`).

What labels it makes: each document piece of a block (the text between EOS markers) is, with
probability `fim_rate`, cut at two uniform token positions into prefix / middle / suffix and
rewritten (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle"):

    PSM (1 - spm_rate):  <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM (spm_rate):      <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle

then the block is trained with the `clm` loss on every position, document-masked like clm. The
other documents stay plain text, so the model remains a left-to-right LM. Each rewritten
document is 3 tokens longer; the block is cut back to its length, so the last 3·k tokens of a
block with k rewritten documents are not trained on in that step (≈ 2% at fim_rate 0.5 and
256-token blocks; they are the start of a document that carries on in the next block).
`fim_inverse` undoes the rewrite exactly (a property test checks it for any document and cut).

How it relates to the others: `clm` with a reordering; `span` (T5) also fills gaps, but many
short ones, with an encoder-decoder. Evaluation: bits per byte of plain documents (as for clm)
and exact match of a held-out middle written greedily from its prefix and suffix.

Example (PSM, cuts after "a" and after "b c"):
    document = [a b c d </s>]
    rewritten = [<fim_prefix> a <fim_suffix> d <fim_middle> b c </s>]
"""

from __future__ import annotations

import torch

from selfsup.objectives.clm import CausalLM


class FillInTheMiddle:
    name = "fim"

    def __init__(self, special_ids: dict[str, int | None], *, fim_rate: float = 0.5, spm_rate: float = 0.5,
                 document_mask: bool = True) -> None:
        missing = [k for k in ("fim_prefix", "fim_middle", "fim_suffix") if special_ids.get(k) is None]
        if missing:
            raise ValueError(
                f"fim needs the tokenizer tokens {', '.join('<' + m + '>' for m in missing)}; train the tokenizer "
                "with selfsup (it reserves them), or rerun the tokenizer stage, which adds them to a reused one"
            )
        self.prefix_id = int(special_ids["fim_prefix"])
        self.middle_id = int(special_ids["fim_middle"])
        self.suffix_id = int(special_ids["fim_suffix"])
        self.eos_id = int(special_ids["eos"])
        self.fim_rate = fim_rate
        self.spm_rate = spm_rate
        self.clm = CausalLM(eos_id=self.eos_id, document_mask=document_mask)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.clm.compute_loss(model, batch)

    def make_batch(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.clm.make_batch(self.transform_blocks(blocks, generator), generator)

    def transform_blocks(self, blocks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T) → (B, T): documents rewritten at fim_rate, each row cut back to T tokens."""
        B, T = blocks.shape
        draws = torch.rand(B, T + 1, 4, generator=generator)  # per (row, document piece): do / spm / cut / cut
        out = []
        for row, d in zip(blocks.tolist(), draws.tolist()):
            pieces, current = [], []
            for t in row:
                if t == self.eos_id:
                    pieces.append(current)
                    current = []
                else:
                    current.append(t)
            pieces.append(current)  # the piece after the last EOS (no EOS of its own in this block)
            new: list[int] = []
            for k, piece in enumerate(pieces):
                if k:
                    new.append(self.eos_id)
                n = len(piece)
                if n and d[k][0] < self.fim_rate:
                    lo, hi = sorted((int(d[k][2] * (n + 1)), int(d[k][3] * (n + 1))))
                    piece = self.transform(piece, min(lo, n), min(hi, n), spm=d[k][1] < self.spm_rate)
                new.extend(piece)
            out.append(new[:T])
        return torch.tensor(out, dtype=blocks.dtype, device=blocks.device)

    def transform(self, doc: list[int], lo: int, hi: int, *, spm: bool) -> list[int]:
        """One document (no EOS) cut at lo ≤ hi into prefix / middle / suffix, in PSM or SPM order."""
        prefix, middle, suffix = doc[:lo], doc[lo:hi], doc[hi:]
        P, M, S = self.prefix_id, self.middle_id, self.suffix_id
        if spm:
            return [P, S, *suffix, M, *prefix, *middle]
        return [P, *prefix, S, *suffix, M, *middle]

    def inverse(self, seq: list[int]) -> list[int]:
        """The document a (possibly) rewritten sequence came from; plain sequences come back as they are."""
        return fim_inverse(seq, self.prefix_id, self.middle_id, self.suffix_id)


def fim_inverse(seq: list[int], prefix_id: int, middle_id: int, suffix_id: int) -> list[int]:
    """Undo PSM or SPM. Both read as <P> A <S> suffix <M> B with document = A + B + suffix
    (PSM: A = prefix, B = middle; SPM: A empty, B = prefix + middle)."""
    if not seq or seq[0] != prefix_id:
        return list(seq)
    s = seq.index(suffix_id)
    m = seq.index(middle_id, s)
    return [*seq[1:s], *seq[m + 1 :], *seq[s + 1 : m]]
