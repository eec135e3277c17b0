"""Samples a person can read: continuations of held-out prompts (clm), fill-ins of masked words (mlm)."""

from __future__ import annotations

import re

import torch


@torch.no_grad()
def generate_samples(model, tokenizer, texts: list[str], *, n: int, new_tokens: int, prompt_tokens: int = 32, seed: int = 0) -> list[dict]:
    """Prompt = the first `prompt_tokens` tokens of a held-out document; reference = what followed."""
    model.eval()
    out = []
    eos = tokenizer.eos_token_id
    for text in texts:
        if len(out) >= n:
            break
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < prompt_tokens + 8:
            continue
        prompt = [eos, *ids[:prompt_tokens]] if eos is not None else ids[:prompt_tokens]
        torch.manual_seed(seed + len(out))
        generated = model.generate(
            input_ids=torch.tensor([prompt], device=model.device),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=model.device),
            max_new_tokens=new_tokens, do_sample=True, temperature=0.8, top_k=50,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        )[0, len(prompt):].tolist()
        out.append({
            "prompt": tokenizer.decode(ids[:prompt_tokens]),
            "completion": tokenizer.decode(generated, skip_special_tokens=True),
            "reference": tokenizer.decode(ids[prompt_tokens : prompt_tokens + new_tokens]),
        })
    return out


WORD = re.compile(r"(?<![\w.])([A-Za-z][a-z]{3,})(?![\w])")


@torch.no_grad()
def fill_mask_samples(model, tokenizer, texts: list[str], *, n: int, context_chars: int = 300, top_k: int = 5) -> list[dict]:
    """Mask one whole word that is a single token, and show the model's top guesses."""
    model.eval()
    out = []
    vocab = tokenizer.get_vocab()
    for text in texts:
        if len(out) >= n:
            break
        snippet = text[:context_chars]
        for match in list(WORD.finditer(snippet))[3:]:
            word = match.group(1)
            piece = ("Ġ" + word) if match.start() > 0 and snippet[match.start() - 1] == " " else word
            if piece not in vocab:
                continue
            # The byte-level token " word" carries its leading space, so the prefix stops before it.
            prefix = snippet[: match.start() - 1] if piece.startswith("Ġ") else snippet[: match.start()]
            before = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            after = tokenizer(snippet[match.end():], add_special_tokens=False)["input_ids"]
            # Keep the mask inside the model's context: up to half of it before, the rest after.
            room = int(getattr(model.config, "max_position_embeddings", 512)) - 1
            before = before[-(room // 2):]
            after = after[: room - len(before)]
            ids = before + [tokenizer.mask_token_id] + after
            pos = len(before)
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, pos]
            guesses = [tokenizer.decode([i]).strip() for i in logits.topk(top_k).indices.tolist()]
            out.append({
                "text": snippet[: match.start()] + tokenizer.mask_token + snippet[match.end():],
                "answer": word,
                "predictions": guesses,
            })
            break
    return out
