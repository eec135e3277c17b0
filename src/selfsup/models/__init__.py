"""Models: presets built from `transformers` configs, or a local HF base model to continue from
(with its vocabulary extended and LoRA adapters, for continued pretraining)."""

from selfsup.models.build import build_model, count_parameters, load_base_for_training, load_pretrained
from selfsup.models.presets import PRESETS, Preset

__all__ = ["PRESETS", "Preset", "build_model", "count_parameters", "load_base_for_training", "load_pretrained"]
