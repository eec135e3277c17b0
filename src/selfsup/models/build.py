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
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    BertConfig,
    BertForMaskedLM,
    BertLMHeadModel,
    BertModel,
    EncoderDecoderModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from selfsup.config import ModelConfig
from selfsup.console import say
from selfsup.errors import UsageError
from selfsup.models.extend import extend_embeddings
from selfsup.models.lora import CONFIG_KEY, apply_lora, load_lora_checkpoint, lora_settings
from selfsup.models.presets import PRESETS
from selfsup.tokens.extend import read_extension

CAUSAL_OBJECTIVES = {"clm", "fim"}  # decoder: LlamaForCausalLM
MASKED_OBJECTIVES = {"mlm"}  # encoder + MLM head: BertForMaskedLM
SEQ2SEQ_OBJECTIVES = {"span"}  # encoder-decoder: T5ForConditionalGeneration
EMBEDDING_OBJECTIVES = {"contrastive", "tsdae"}  # encoder, no head: BertModel (tsdae adds a decoder)
SIMCSE_DROPOUT = 0.1  # contrastive's dropout when [model] dropout is left at 0: the noise SimCSE needs


def build_model(
    objective: str,
    preset: str,
    *,
    vocab_size: int,
    seq_len: int,
    special_ids: dict[str, int | None],
    dropout: float = 0.0,
) -> PreTrainedModel:
    """A freshly initialised model of the family the objective needs: decoder (clm, fim), encoder
    with MLM head (mlm), T5 encoder-decoder (span), encoder (contrastive; tsdae adds a decoder)."""
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
        return LlamaForCausalLM(config)
    if objective in MASKED_OBJECTIVES:
        return BertForMaskedLM(_bert_config(p, padded_vocab, seq_len, special_ids, dropout))
    if objective in SEQ2SEQ_OBJECTIVES:
        # T5 v1.1 layout (gated GELU, relative positions: no length limit), tied embeddings; the
        # decoder starts from pad, as T5's does.
        config = T5Config(
            vocab_size=padded_vocab,
            d_model=p.hidden,
            d_kv=p.hidden // p.heads,
            d_ff=p.decoder_ffn,
            num_layers=p.layers,
            num_decoder_layers=p.layers,
            num_heads=p.heads,
            feed_forward_proj="gated-gelu",
            dropout_rate=dropout,
            tie_word_embeddings=True,
            pad_token_id=special_ids.get("pad") or 0,
            eos_token_id=special_ids.get("eos"),
            decoder_start_token_id=special_ids.get("pad") or 0,
        )
        return T5ForConditionalGeneration(config)
    if objective in EMBEDDING_OBJECTIVES:
        dropout = dropout or SIMCSE_DROPOUT
        # Embedding models are used on passages of any length later: at least BERT's 512 positions.
        encoder = BertModel(_bert_config(p, padded_vocab, max(seq_len, 512), special_ids, dropout), add_pooling_layer=False)
        if objective == "contrastive":
            return encoder
        return tsdae_model(encoder)
    raise UsageError(f"objective {objective!r} has no model family")


def _bert_config(p, padded_vocab: int, seq_len: int, special_ids: dict[str, int | None], dropout: float) -> BertConfig:
    return BertConfig(
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


def tsdae_model(encoder: PreTrainedModel) -> EncoderDecoderModel:
    """TSDAE's encoder-decoder: the encoder, and a BERT decoder with cross-attention started from
    the encoder's weights (the paper ties them; see objectives/tsdae.py)."""
    dec_config = BertConfig(**{**encoder.config.to_dict(), "is_decoder": True, "add_cross_attention": True})
    decoder = BertLMHeadModel(dec_config)
    decoder.bert.load_state_dict(encoder.state_dict(), strict=False)  # embeddings and layers; cross-attention stays new
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config.decoder_start_token_id = encoder.config.eos_token_id
    model.config.pad_token_id = encoder.config.pad_token_id
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
    kwargs = dict(use_safetensors=True, trust_remote_code=False, dtype=torch.float32)
    if CONFIG_KEY in config:  # a checkpoint trained with LoRA: merge the adapters into a plain model
        hf_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        return load_lora_checkpoint(model_dir, hf_config, lambda c: _empty_model(c, objective))
    if objective in CAUSAL_OBJECTIVES:
        return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if objective in MASKED_OBJECTIVES:
        return AutoModelForMaskedLM.from_pretrained(model_dir, **kwargs)
    if objective in SEQ2SEQ_OBJECTIVES:
        return AutoModelForSeq2SeqLM.from_pretrained(model_dir, **kwargs)
    if objective == "tsdae":
        if config.get("model_type") == "encoder-decoder":  # a tsdae checkpoint
            return EncoderDecoderModel.from_pretrained(model_dir, **kwargs)
        return tsdae_model(AutoModel.from_pretrained(model_dir, **kwargs))  # an encoder to adapt
    if objective in EMBEDDING_OBJECTIVES:
        return AutoModel.from_pretrained(model_dir, **kwargs)
    raise UsageError(f"objective {objective!r} has no model family")


def load_base_for_training(model_cfg: ModelConfig, objective: str, tokenizer_dir: Path) -> PreTrainedModel:
    """The base model ready to continue training: vocabulary grown for an extended tokenizer, then
    LoRA adapters when asked. Deterministic, so a resumed run rebuilds the same module."""
    model = load_pretrained(model_cfg.base, objective)
    extension = read_extension(tokenizer_dir)
    if extension is not None:
        extend_embeddings(model, extension["terms"])
    if model_cfg.lora:
        settings = lora_settings(model, model_cfg, train_embeddings=extension is not None)
        model = apply_lora(model, settings)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        say(f"LoRA rank {settings['rank']} on {', '.join(settings['targets'])}: {trainable / 1e6:.2f}M trainable "
            f"parameters{' (embeddings and head included: the vocabulary was extended)' if extension else ''}")
    return model


def _empty_model(config, objective: str) -> PreTrainedModel:
    """A model of the objective's family built from `config` (weights to be loaded after)."""
    if config.model_type == "encoder-decoder":
        return EncoderDecoderModel(config=config)
    cls = (AutoModelForCausalLM if objective in CAUSAL_OBJECTIVES else AutoModelForMaskedLM if objective in MASKED_OBJECTIVES
           else AutoModelForSeq2SeqLM if objective in SEQ2SEQ_OBJECTIVES else AutoModel)
    return cls.from_config(config, dtype=torch.float32)


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (a tied embedding / output matrix counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
