"""The recipe: one typed section per pipeline stage, read from TOML.

A run is a complete config, not a pile of flags. Every section forbids unknown keys, so a typo
(`max_step`) is an error that names the key, the allowed keys and the closest match, instead of a
setting that silently does nothing. Paths in a recipe are relative to the recipe file, so a recipe
can be moved together with its data.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from selfsup.errors import ConfigError

ObjectiveName = Literal["clm", "mlm"]


class Section(BaseModel):
    """Base of every recipe section: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusConfig(Section):
    """[corpus]: which files become documents."""

    sources: list[Path] = Field(default_factory=list, description="files or folders to ingest")
    extensions: list[str] = Field(
        default_factory=lambda: [".txt", ".md", ".rst", ".html", ".htm", ".jsonl"],
        description="file extensions that are read; other files are dropped as `unsupported_type`",
    )
    jsonl_text_field: str = Field("text", description="field of each JSONL record that holds the text")
    validation_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of documents held out")
    min_chars: int = Field(1, ge=1, description="documents shorter than this (after normalising) are dropped")
    max_file_bytes: int = Field(64 * 2**20, ge=1, description="larger files are dropped as `too_large`")
    follow_symlinks: bool = False
    shard_documents: int = Field(50_000, ge=1, description="documents per Parquet shard")

    @field_validator("extensions")
    @classmethod
    def _dotted_lowercase(cls, value: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else "." + e.lower() for e in value]


class TokenizerConfig(Section):
    """[tokenizer]: train a byte-level BPE on the corpus, or reuse a model's tokenizer (`from`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    vocab_size: int = Field(8192, ge=300, le=2**20)
    from_dir: Path | None = Field(None, alias="from", description="reuse the tokenizer of this HF model directory")
    min_frequency: int = Field(2, ge=1)
    max_train_chars: int = Field(200_000_000, ge=1, description="stop feeding the trainer after this much text")


class PackConfig(Section):
    """[pack]: documents → fixed-length blocks of token ids, no padding."""

    seq_len: int = Field(256, ge=8, le=131072)
    shard_tokens: int = Field(2**24, ge=1, description="tokens per shard file (rounded down to whole blocks)")
    batch_documents: int = Field(1000, ge=1, description="documents encoded per call (tokenizers runs them in parallel)")


class ModelConfig(Section):
    """[model]: a preset built from scratch, or `base` = an HF model directory to continue training."""

    preset: Literal["tiny", "small", "base"] = "tiny"
    base: Path | None = Field(None, description="HF model directory to continue from (safetensors only)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class ObjectiveConfig(Section):
    """[objective]: what the data is asked to predict about itself."""

    name: ObjectiveName = "clm"
    mask_rate: float = Field(0.15, gt=0.0, lt=1.0, description="mlm: share of tokens selected")
    mask_replace: float = Field(0.8, ge=0.0, le=1.0, description="mlm: of the selected, share replaced by [MASK]")
    random_replace: float = Field(0.1, ge=0.0, le=1.0, description="mlm: of the selected, share replaced by a random token")
    document_mask: bool = Field(True, description="clm: a block's documents do not attend to each other")

    @field_validator("random_replace")
    @classmethod
    def _shares_fit(cls, value: float, info: Any) -> float:
        if info.data.get("mask_replace", 0.8) + value > 1.0:
            raise ValueError("mask_replace + random_replace must be at most 1 (the rest is kept unchanged)")
        return value


class TrainConfig(Section):
    """[train]: the loop. It stops at whichever of max_steps / max_tokens / max_minutes comes first."""

    max_steps: int | None = Field(200, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    batch_size: int = Field(16, ge=1, description="blocks per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr * min_lr_ratio")
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="0 turns clipping off")
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 autocast where supported")
    compile: bool = False
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    eval_every: int = Field(50, ge=1, description="validation loss every N steps")
    eval_batches: int = Field(8, ge=1, description="validation micro-batches per evaluation")
    log_every: int = Field(1, ge=1)
    checkpoint_every_steps: int | None = Field(None, ge=1, description="also checkpoint every N steps")
    checkpoint_every_minutes: float | None = Field(30.0, gt=0, description="also checkpoint every M minutes")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept (older deleted after a save)")
    max_nonfinite_in_a_row: int = Field(5, ge=1, description="stop after this many skipped non-finite steps in a row")
    progress: bool = True


class EvalConfig(Section):
    """[eval]: held-out measurement after training."""

    max_documents: int = Field(200, ge=1, description="held-out documents measured")
    max_tokens: int = Field(200_000, ge=1, description="stop after this many held-out tokens")
    batch_size: int = Field(8, ge=1)
    samples: int = Field(4, ge=0, description="generated / filled-in samples shown in the report")
    sample_tokens: int = Field(48, ge=1)


class Recipe(Section):
    """A whole run: one section per stage."""

    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    pack: PackConfig = Field(default_factory=PackConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def settings_hash(*parts: Any) -> str:
    """A stable hash of settings (pydantic sections, dicts, strings): the key for 'is this stage done?'."""
    canonical = []
    for part in parts:
        if isinstance(part, BaseModel):
            part = part.model_dump(mode="json", by_alias=True)
        canonical.append(part)
    blob = json.dumps(canonical, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def load_recipe(path: Path) -> Recipe:
    """Read and validate a TOML recipe; relative paths are resolved against the recipe's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist; pass the path of a .toml file (see recipes/ for examples)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {path} is not valid TOML: {exc}") from None
    recipe = recipe_from_dict(raw, origin=str(path))
    return resolve_paths(recipe, path.parent.resolve())


def recipe_from_dict(raw: dict[str, Any], origin: str = "recipe") -> Recipe:
    """Validate a recipe dict, turning pydantic's errors into one line a user can act on."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain_validation_error(exc, origin)) from None


def resolve_paths(recipe: Recipe, root: Path) -> Recipe:
    """Make the recipe's relative paths absolute against `root` (the recipe file's folder)."""

    def absolute(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = Path(p).expanduser()
        return p if p.is_absolute() else (root / p)

    recipe.corpus.sources = [absolute(p) for p in recipe.corpus.sources]
    recipe.tokenizer.from_dir = absolute(recipe.tokenizer.from_dir)
    recipe.model.base = absolute(recipe.model.base)
    return recipe


def explain_validation_error(exc: ValidationError, origin: str) -> str:
    """First error only, as `origin: [section] key: problem; allowed ...; did you mean ...`."""
    err = exc.errors()[0]
    loc = [str(x) for x in err["loc"]]
    where = f"[{loc[0]}] {'.'.join(loc[1:])}".strip() if len(loc) > 1 else (loc[0] if loc else "")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        msg = f"{origin}: unknown key {where!s}"
        if len(loc) == 1:
            msg = f"{origin}: unknown section [{loc[0]}]"
        msg += f"; allowed: {', '.join(allowed)}"
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        return msg
    msg = f"{origin}: {where}: {err['msg']}"
    if err["type"] == "literal_error":
        msg += f" (got {err.get('input')!r})"
    elif "input" in err and not isinstance(err["input"], dict):
        msg += f" (got {err['input']!r})"
    return msg


def _allowed_keys(section_path: list[str]) -> list[str]:
    model: type[BaseModel] = Recipe
    for key in section_path:
        field = model.model_fields.get(key)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return [f.alias or name for name, f in model.model_fields.items()]
