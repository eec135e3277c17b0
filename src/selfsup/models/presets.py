"""Model sizes by name. One dial (the preset) sets width, depth and heads.

Decoders are Llama-style (RMSNorm, SwiGLU, rotary positions, tied embeddings): the architecture
of most open base models, so what we train from scratch exports to the same class users already
load. Encoders are BERT: the family `transformers`' masked-LM tooling knows best.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset:
    hidden: int
    layers: int
    heads: int
    decoder_ffn: int  # SwiGLU width (≈ 8/3 · hidden, rounded)
    encoder_ffn: int  # GELU MLP width (4 · hidden)


PRESETS: dict[str, Preset] = {
    # ~2M parameters with an 8k vocabulary: CPU demos and tests, minutes on 2 cores.
    "tiny": Preset(hidden=128, layers=4, heads=4, decoder_ffn=384, encoder_ffn=512),
    # ~15M: a realistic CPU run (hours), or seconds per step on a GPU.
    "small": Preset(hidden=384, layers=6, heads=6, decoder_ffn=1024, encoder_ffn=1536),
    # ~110M with a 32k vocabulary: GPT-2-small / BERT-base size, for GPUs.
    "base": Preset(hidden=768, layers=12, heads=12, decoder_ffn=2048, encoder_ffn=3072),
}
