"""Where each stage's artefact lives inside a work directory (see DESIGN.md, "Work directory")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Workdir:
    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def base(self) -> Path:
        """A GGUF base model imported into a plain HF directory."""
        return self.root / "base"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"
