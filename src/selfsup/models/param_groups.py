"""Which parameters the optimizer updates, with which weight decay and which learning rate.

Weight decay goes on matrices only (not norms, biases). With `[train] embedding_lr` set (the
continued-pretraining default is lr/10) the input embeddings and output head form their own group
whose `lr_scale` is embedding_lr / lr: the loop multiplies the scheduled LR by each group's scale,
so the embeddings follow the same warmup and cosine, lower. Frozen parameters (a LoRA base) are
left out altogether. Without embedding_lr the groups are the two they always were, so runs from
scratch and their checkpoints are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch


def optimizer_param_groups(model: torch.nn.Module, cfg) -> list[dict[str, Any]]:
    """AdamW parameter groups for `model` under [train] settings `cfg` (lr, weight_decay, embedding_lr)."""
    params = [p for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad]
    embedding_ids = _embedding_ids(model) if cfg.embedding_lr is not None else set()
    embedding = [p for p in params if id(p) in embedding_ids]
    rest = [p for p in params if id(p) not in embedding_ids]
    groups = [
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0},
    ]
    if embedding:
        groups.append({"params": embedding, "weight_decay": cfg.weight_decay, "lr_scale": cfg.embedding_lr / cfg.lr})
    return groups


def _embedding_ids(model: torch.nn.Module) -> set[int]:
    """ids of the input embedding and output head weights (one id when they are tied)."""
    found = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None and getattr(module, "weight", None) is not None:
            found.add(id(module.weight))
    return found
