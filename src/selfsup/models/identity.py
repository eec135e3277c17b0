"""Which model is this? A fingerprint of its files and a name a person recognises.

An adapted model is locked to its base: the model card, the report and `selfsup compare` name the
base and its fingerprint, so anyone can tell which base a model was made from and whether two
runs started from the same one. The fingerprint hashes the files that make the model (weights,
config, tokenizer), not the folder's path or manifest: the same weights copied elsewhere keep it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from selfsup.manifest import file_sha256

MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".txt", ".model")
SKIPPED = {"MANIFEST.json", "manifest.json", "README.md", "run.json", "eval.json"}


def model_fingerprint(path: Path) -> str:
    """sha256 over a model directory's files (or a GGUF file's bytes): "sha256:<hex>" / "gguf:<hex>"."""
    path = Path(path)
    if path.is_file():
        return ("gguf:" if path.suffix.lower() == ".gguf" else "sha256:") + file_sha256(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.iterdir() if q.is_file() and q.suffix in MODEL_FILE_SUFFIXES and q.name not in SKIPPED):
        digest.update(f"{p.name}\0{file_sha256(p)}\n".encode())
    return "sha256:" + digest.hexdigest()


def short(fingerprint: str | None, digits: int = 12) -> str:
    """"gguf:0123456789ab" — enough to tell models apart on a page."""
    if not fingerprint:
        return "?"
    kind, _, hexdigest = fingerprint.partition(":")
    return f"{kind}:{hexdigest[:digits]}" if hexdigest else fingerprint[:digits]


def display_name(path: Path | str) -> str:
    """The name people use for a model: the GGUF file's stem, else the folder's name."""
    path = Path(path)
    return path.stem if path.suffix.lower() == ".gguf" else path.name
