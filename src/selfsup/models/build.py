"""Build a torch module for an objective: from a preset, or from a local HF base directory.

Base models load from safetensors only and never with `trust_remote_code`: a config that asks
for remote code (`auto_map`) is refused, because running a model repository's Python is running
a stranger's program.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from selfsup.errors import UsageError
from selfsup.models.presets import PRESETS

CAUSAL_OBJECTIVES = {"clm"}
MASKED_OBJECTIVES = {"mlm"}


def build_model(
    objective: str,
    preset: str,
    *,
    vocab_size: int,
    seq_len: int,
    special_ids: dict[str, int | None],
    dropout: float = 0.0,
) -> PreTrainedModel:
    """A freshly initialised model of the family the objective needs (decoder for clm, encoder for mlm)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    # Round the vocabulary up to a multiple of 64: matmuls on tensor cores / AVX-512 tiles run faster.
    padded_vocab = (vocab_size + 63) // 64 * 64
    if objective in CAUSAL_OBJECTIVES:
        config = LlamaConfig(
            vocab_size=padded_vocab,
            hidden_size=p.hidden,
            intermediate_size=p.decoder_ffn,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            num_key_value_heads=p.heads,
            max_position_embeddings=seq_len,
            rope_theta=10000.0,
            attention_dropout=dropout,
            tie_word_embeddings=True,
            bos_token_id=special_ids.get("bos"),
            eos_token_id=special_ids.get("eos"),
            pad_token_id=special_ids.get("pad"),
        )
        model = LlamaForCausalLM(config)
    elif objective in MASKED_OBJECTIVES:
        config = BertConfig(
            vocab_size=padded_vocab,
            hidden_size=p.hidden,
            intermediate_size=p.encoder_ffn,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            max_position_embeddings=seq_len,
            type_vocab_size=1,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            pad_token_id=special_ids.get("pad") or 0,
            bos_token_id=special_ids.get("bos"),
            eos_token_id=special_ids.get("eos"),
            tie_word_embeddings=True,
        )
        model = BertForMaskedLM(config)
    else:
        raise UsageError(f"objective {objective!r} has no model family yet; use clm or mlm")
    return model


def load_pretrained(model_dir: Path, objective: str) -> PreTrainedModel:
    """Load a local HF directory (safetensors only, no remote code) for the objective's family."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    config = json.loads(config_path.read_text())
    if "auto_map" in config:
        raise UsageError(
            f"{model_dir}/config.json asks for remote code (auto_map); selfsup never runs a model's own "
            "Python. Use a model of a standard transformers architecture."
        )
    if not any(model_dir.glob("*.safetensors")):
        raise UsageError(f"{model_dir} has no .safetensors weights; selfsup does not load pickle (.bin) checkpoints")
    auto = AutoModelForCausalLM if objective in CAUSAL_OBJECTIVES else AutoModelForMaskedLM
    return auto.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False, dtype=torch.float32)


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (a tied embedding / output matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
