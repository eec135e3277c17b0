"""Import a GGUF base model (llama.cpp's format) into a plain Hugging Face directory.

Many open models ship as GGUF, often quantised. Training needs full-precision weights in a
standard architecture, so the file is read once with `transformers`' GGUF loader (which
dequantises it with the `gguf` package) and saved as config.json + model.safetensors +
tokenizer files. From then on the base is an ordinary safetensors directory, loaded without
remote code, like any other.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from selfsup.errors import UsageError
from selfsup.manifest import write_manifest
from selfsup.models.identity import model_fingerprint


def gguf_fingerprint(gguf_path: Path) -> str:
    return model_fingerprint(Path(gguf_path))  # "gguf:<sha256 of the file>"


def import_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise `gguf_path` into `out_dir` (an HF directory with a manifest); returns out_dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise UsageError(f"GGUF file {gguf_path} does not exist")
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UsageError("reading a GGUF base model needs the `gguf` package: pip install gguf") from None
    folder, name = str(gguf_path.parent), gguf_path.name
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader's own progress bar ignores the switch above
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"could not import {gguf_path}: {first}") from None
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; the weights are
    # already dequantised, so rebuild a plain model from the config and copy them over.
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    model = plain
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    write_manifest(out_dir, stage="gguf-import", fingerprint=gguf_fingerprint(gguf_path),
                   extra={"source": str(gguf_path), "architecture": type(model).__name__})
    return out_dir
