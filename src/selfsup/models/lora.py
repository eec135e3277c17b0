"""LoRA adapters (`[model] lora = true`) on a base model, with `peft`; and merging them back.

Continued pretraining with LoRA trains a few million adapter weights instead of every weight:
optimizer state shrinks accordingly and the base's general ability is harder to overwrite. The
adapters are injected into the transformers model itself (`get_peft_model(...).get_base_model()`),
so the training loop, the checkpoints and the resume path see an ordinary module: a checkpoint is
the whole state dict (frozen base + adapters) in model.safetensors, and its config.json carries
the adapter settings under `selfsup_lora`. `load_pretrained` recognises that key and returns the
merged model (`merge_and_unload`), so evaluation and export get a plain transformers model that
loads without peft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file
from transformers import PretrainedConfig, PreTrainedModel

from selfsup.config import ModelConfig
from selfsup.errors import UsageError

CONFIG_KEY = "selfsup_lora"  # config.json key of a checkpoint with adapters

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_BERT_LIKE = ["query", "key", "value", "dense"]
# Attention and MLP projections per architecture family: LoRA needs every linear layer of the
# blocks to come close to full fine-tuning (QLoRA, Dettmers et al. 2023), not attention alone.
DEFAULT_TARGETS: dict[str, list[str]] = {
    **dict.fromkeys(["llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "granite",
                     "smollm3"], _LLAMA_LIKE),
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    **dict.fromkeys(["bert", "roberta", "xlm-roberta"], _BERT_LIKE),
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "modernbert": ["Wqkv", "Wo", "Wi"],
    **dict.fromkeys(["t5", "mt5"], ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"]),
}


def unwrap_lora(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model under a peft LoRA wrapper (its adapters stay in place); any other model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lora_targets(config: PretrainedConfig, given: list[str] | None) -> list[str]:
    """The module names that get adapters: the recipe's, else the family default."""
    if given:
        return list(given)
    model_type = config.model_type
    if model_type == "encoder-decoder":  # tsdae: adapt the encoder's (and its copy's) layers
        model_type = config.encoder.model_type
    if model_type in DEFAULT_TARGETS:
        return DEFAULT_TARGETS[model_type]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if model_type in PEFT_DEFAULTS:
        return list(PEFT_DEFAULTS[model_type])
    raise UsageError(
        f"no default LoRA target modules for model type {model_type!r}; set [model] lora_targets to the names of "
        "its attention and MLP Linear layers (e.g. [\"q_proj\", \"v_proj\"])"
    )


def lora_settings(model: PreTrainedModel, cfg: ModelConfig, *, train_embeddings: bool) -> dict[str, Any]:
    """What a checkpoint records (config.json `selfsup_lora`) to rebuild the same adapters."""
    return {
        "rank": cfg.lora_rank,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        "targets": lora_targets(model.config, cfg.lora_targets),
        "train_embeddings": train_embeddings,
    }


def apply_lora(model: PreTrainedModel, settings: dict[str, Any]) -> PreTrainedModel:
    """Inject adapters into `model` and freeze everything else (but embeddings + head when asked).

    Returns the same transformers model, now with LoRA layers; `settings` is `lora_settings(...)`.
    """
    from peft import get_peft_model

    try:
        peft_model = get_peft_model(model, _peft_config(model.config, settings))
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        first = (str(exc).strip().splitlines() or ["no module matched"])[0]
        raise UsageError(f"[model] lora_targets {settings['targets']} do not fit this model: {first}") from None
    model = peft_model.get_base_model()
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    if settings.get("train_embeddings"):
        model.get_input_embeddings().weight.requires_grad = True
        head = model.get_output_embeddings()
        if head is not None:
            head.weight.requires_grad = True
    setattr(model.config, CONFIG_KEY, dict(settings))
    return model


def load_lora_checkpoint(model_dir: Path, config: PretrainedConfig, build: Callable[[PretrainedConfig], PreTrainedModel]) -> PreTrainedModel:
    """A checkpoint saved with adapters → the plain model with the adapters merged in.

    `build(config)` makes an empty model of the objective's family; the checkpoint's weights
    (base + adapters) are loaded into it with the same adapters injected, then merged.
    """
    settings = getattr(config, CONFIG_KEY)
    delattr(config, CONFIG_KEY)
    from peft import get_peft_model

    peft_model = get_peft_model(build(config), _peft_config(config, settings))
    inner = peft_model.get_base_model()
    weights: dict[str, torch.Tensor] = {}
    for part in sorted(Path(model_dir).glob("model*.safetensors")):
        weights.update(load_file(part))
    missing, unexpected = inner.load_state_dict(weights, strict=False)
    tied = _tied_keys(inner)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise UsageError(
            f"{model_dir}: the LoRA checkpoint's weights do not fit its config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); train again with --fresh"
        )
    merged = peft_model.merge_and_unload()
    if hasattr(merged.config, CONFIG_KEY):
        delattr(merged.config, CONFIG_KEY)
    return merged


def _peft_config(config: PretrainedConfig, settings: dict[str, Any]):
    from peft import LoraConfig

    return LoraConfig(
        r=int(settings["rank"]),
        lora_alpha=float(settings["alpha"]),
        lora_dropout=float(settings["dropout"]),
        target_modules=list(settings["targets"]),
        bias="none",
        fan_in_fan_out=config.model_type == "gpt2",  # GPT-2's Conv1D stores weights transposed
    )


def _tied_keys(model: PreTrainedModel) -> set[str]:
    """State-dict keys that share storage with another key (a tied output head): saved once."""
    seen: dict[int, str] = {}
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        else:
            seen[id(tensor)] = name
    return tied
