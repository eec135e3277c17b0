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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfsup.errors import ConfigError

ObjectiveName = Literal["clm", "mlm", "fim", "span", "contrastive", "tsdae"]
DECODER_OBJECTIVES = frozenset({"clm", "fim"})  # always train a causal decoder
MIXABLE_OBJECTIVES = frozenset({"clm", "fim", "span"})  # one decoder, one loss: they can share a run


class Section(BaseModel):
    """Base of every recipe section: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusConfig(Section):
    """[corpus]: which files become documents, how they are read, cleaned and de-duplicated."""

    sources: list[Path] = Field(default_factory=list, description="files or folders to ingest")
    extensions: list[str] = Field(
        default_factory=lambda: [
            ".txt", ".md", ".rst", ".html", ".htm", ".jsonl", ".pdf", ".docx", ".pptx", ".eml", ".mbox",
            ".csv", ".parquet", ".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz",
        ],
        description="file extensions that are read (by their format); other files are dropped as `unsupported_type`",
    )  # fmt: skip
    code_extensions: list[str] = Field(
        default_factory=lambda: [
            ".py", ".c", ".h", ".cc", ".cpp", ".hpp", ".java", ".js", ".ts", ".go", ".rs", ".rb", ".sh",
            ".sql", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".adoc",
        ],
        description="source code read verbatim (no mojibake repair, no prose filters); [] turns code off",
    )  # fmt: skip
    jsonl_text_field: str = Field("text", description="field of each JSONL record that holds the text")
    text_columns: list[str] = Field(default_factory=lambda: ["text"], description="CSV / Parquet columns joined into a row's text")
    validation_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of documents held out")
    min_chars: int = Field(1, ge=1, description="documents shorter than this (after normalising) are dropped")
    max_file_bytes: int = Field(64 * 2**20, ge=1, description="larger files (and archive members) are dropped as `too_large`")
    follow_symlinks: bool = False
    shard_documents: int = Field(50_000, ge=1, description="documents per Parquet shard")
    # sandboxed extraction
    workers: int | None = Field(None, ge=0, description="extraction processes (None: all cores; 0: in this process, no sandbox)")
    timeout_seconds: float = Field(120.0, gt=0, description="per-file extraction time limit (`timeout`)")
    memory_mb: int = Field(2048, ge=256, description="address-space limit of a worker process (`memory`)")
    readers: dict[str, str] = Field(
        default_factory=dict, description="extra readers: extension → 'module:function' (bytes, cfg) → texts"
    )
    # archives (zip, tar): read in memory, member by member
    max_archive_members: int = Field(10_000, ge=1, description="members read per archive (`archive_limit`)")
    max_archive_bytes: int = Field(1 * 2**30, ge=1, description="decompressed bytes read per archive file, nested ones included")
    max_archive_ratio: float = Field(200.0, gt=1, description="decompressed / compressed size above which reading stops")
    max_archive_depth: int = Field(2, ge=0, description="archives inside archives, this deep")
    # cleaning
    fix_mojibake: bool = Field(True, description="repair mis-decoded text with ftfy (not code)")
    max_line_chars: int = Field(1_000_000, ge=1, description="a longer line drops the document (`filtered:long_line`)")
    min_letter_fraction: float = Field(0.4, ge=0, le=1, description="letters among non-space characters (`filtered:symbols`)")
    max_duplicate_line_fraction: float = Field(0.3, ge=0, le=1, description="characters in repeated lines (`filtered:repetition`)")
    max_boilerplate_line_fraction: float = Field(0.5, ge=0, le=1, description="boilerplate lines (`filtered:boilerplate`)")
    languages: list[str] = Field(default_factory=list, description="ISO 639-1 codes kept (`filtered:language`); [] keeps all")
    pii: bool = Field(True, description="replace e-mails, phones, IPs, cards, IBANs, secrets by <TYPE> placeholders")
    # near-duplicates
    near_dedup: bool = Field(True, description="MinHash + LSH near-duplicate removal (`near_duplicate_of:<id>`)")
    near_dedup_threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard of word 5-grams to call a near-duplicate")
    minhash_permutations: int = Field(128, ge=16, le=1024)

    @field_validator("extensions", "code_extensions")
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
    extend: int = Field(
        0, ge=0, le=100_000,
        description="with a reused tokenizer (a base model's): add up to N frequent domain terms it splits into many "
        "pieces as new tokens (0: off); the model's new rows start as the mean of the old pieces",
    )


class PackConfig(Section):
    """[pack]: documents → fixed-length blocks of token ids, no padding."""

    seq_len: int = Field(256, ge=8, le=131072)
    shard_tokens: int = Field(2**24, ge=1, description="tokens per shard file (rounded down to whole blocks)")
    batch_documents: int = Field(1000, ge=1, description="documents encoded per call (tokenizers runs them in parallel)")


class ModelConfig(Section):
    """[model]: a preset built from scratch, or `base` = an HF model directory to continue training."""

    preset: Literal["tiny", "small", "base"] = "tiny"
    base: Path | None = Field(
        None, description="HF model directory (safetensors only) or .gguf file to continue from; its tokenizer is reused"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora: bool = Field(False, description="train low-rank adapters (peft LoRA) on the base instead of every weight")
    lora_rank: int = Field(16, ge=1, description="LoRA rank r")
    lora_alpha: float = Field(32.0, gt=0, description="LoRA scale numerator: updates are scaled by alpha / rank")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA branch's input")
    lora_targets: list[str] | None = Field(
        None, description="module names that get adapters; None: per family (attention + MLP projections)"
    )


class ObjectiveConfig(Section):
    """[objective]: what the data is asked to predict about itself."""

    name: ObjectiveName = "clm"
    mask_rate: float = Field(0.15, gt=0.0, lt=1.0, description="mlm: share of tokens selected")
    mask_replace: float = Field(0.8, ge=0.0, le=1.0, description="mlm: of the selected, share replaced by [MASK]")
    random_replace: float = Field(0.1, ge=0.0, le=1.0, description="mlm: of the selected, share replaced by a random token")
    document_mask: bool = Field(True, description="clm, fim: a block's documents do not attend to each other")
    whole_word: bool = Field(True, description="mlm: select whole words (all their tokens), not single tokens")
    mask_spans: bool = Field(False, description="mlm: select spans of whole words (SpanBERT) instead of single words")
    span_p: float = Field(0.2, gt=0.0, le=1.0, description="mlm spans: span length in words ~ Geometric(span_p)")
    max_span_words: int = Field(10, ge=1, description="mlm spans: longest span, in words")
    fim_rate: float = Field(0.5, ge=0.0, le=1.0, description="fim: share of documents reordered for infilling")
    spm_rate: float = Field(0.5, ge=0.0, le=1.0, description="fim: of the reordered, share in suffix-prefix-middle order")
    noise_density: float = Field(0.15, gt=0.0, lt=1.0, description="span: share of tokens corrupted (T5: 0.15)")
    mean_noise_span_length: float = Field(3.0, ge=1.0, description="span: mean corrupted span length (T5: 3)")
    temperature: float = Field(0.05, gt=0.0, description="contrastive: InfoNCE softmax temperature (SimCSE: 0.05)")
    passage_tokens: int = Field(64, ge=4, description="contrastive, tsdae: tokens per passage")
    positives: Literal["structure", "neighbours", "dropout"] = Field(
        "structure", description="contrastive: pairs mined from the documents' structure (heading → section, first "
        "sentence → rest, a sentence → its passage) with a BM25 hard negative each (pairs/); or the next span of the "
        "same document; or the same span (SimCSE)",
    )
    title_share: float | None = Field(
        None, ge=0.0, lt=1.0, description="contrastive (structure): share of training pairs that are heading → section, "
        "repeating the heading pairs mined (None: as mined, ~4-8% in manuals; 0.2 measured once: heading questions MRR "
        "0.34 → 0.46 on sqlite3-doc with all questions 0.49 → 0.47, 0.352 → 0.365 on git-doc with 0.441 → 0.446)",
    )
    deletion_rate: float = Field(0.6, gt=0.0, lt=1.0, description="tsdae: share of words deleted from the input")
    mix: dict[ObjectiveName, float] | None = Field(
        None, description="decoders: several objectives in one run, name = share of micro-batches, e.g. "
        "{clm = 0.5, span = 0.5}; each micro-batch draws one from the seeded per-step generator, so a resumed run "
        "draws the same (objectives/mix.py)",
    )

    @property
    def names(self) -> list[str]:
        """The objectives this run trains: the mix's, else the one named."""
        return list(self.mix) if self.mix else [self.name]

    @property
    def label(self) -> str:
        """How logs and reports name it: "clm", or "mix: clm 75% + span 25%"."""
        if not self.mix:
            return self.name
        total = sum(self.mix.values())
        return "mix: " + " + ".join(f"{n} {w / total:.0%}" for n, w in sorted(self.mix.items()))

    @model_validator(mode="after")
    def _mix_is_of_decoder_objectives(self) -> ObjectiveConfig:
        if self.mix is None:
            return self
        if not self.mix or any(w <= 0 for w in self.mix.values()):
            raise ValueError("[objective] mix needs at least one objective, each with a share above 0, "
                             "e.g. mix = {clm = 0.5, span = 0.5}")
        other = sorted(set(self.mix) - MIXABLE_OBJECTIVES)
        if other:
            raise ValueError(f"[objective] mix combines objectives of one causal decoder ({', '.join(sorted(MIXABLE_OBJECTIVES))}); "
                             f"{', '.join(other)} trains another kind of model: train it in a run of its own")
        if "name" not in self.model_fields_set:  # the main objective: the largest share (names its metrics first)
            object.__setattr__(self, "name", max(self.mix, key=lambda k: self.mix[k]))
        elif self.name not in self.mix:
            raise ValueError(f"[objective] name = {self.name!r} is not in mix {dict(self.mix)}; add it to the mix or "
                             "leave name out (the largest share is the main objective)")
        return self

    @field_validator("random_replace")
    @classmethod
    def _shares_fit(cls, value: float, info: Any) -> float:
        if info.data.get("mask_replace", 0.8) + value > 1.0:
            raise ValueError("mask_replace + random_replace must be at most 1 (the rest is kept unchanged)")
        return value


class TrainConfig(Section):
    """[train]: the loop. It stops at whichever of max_steps / max_tokens / max_minutes comes first."""

    max_steps: int | None = Field(
        None, ge=1, description="optimizer steps (when no bound is set at all: 200); a time budget alone is not cut by it"
    )
    max_tokens: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget; the step count is planned from the first steps' times so the "
        "learning rate finishes its decay when the time is up (train/budget.py)",
    )
    batch_size: int = Field(16, ge=1, description="blocks per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        3e-3, description='peak learning rate; "auto" (continued pretraining): a short range test on the base '
        "picks it (train/lr_search.py)",
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the schedule decays to lr * min_lr_ratio")
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine", description="cosine: decay from the peak all along; wsd: warmup, stable peak, then a (1 - sqrt) "
        "cooldown over the last decay_fraction of the steps (train/schedule.py)",
    )
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of the steps spent cooling down")
    select: Literal["none", "learnable"] = Field(
        "none", description="learnable (continuing a decoder base): the base scores the training blocks first and "
        "the run leaves out the fifth it already predicts best and the 2% near random, for ~10% of the budget "
        "(train/selection.py)",
    )
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="0 turns clipping off")
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 autocast where supported")
    compile: bool = Field(False, description="torch.compile the step; unset, on for a GPU (train/loop.py compile_on)")
    activation_checkpointing: bool = Field(
        False, description="memory-saving mode: compiled, the step keeps a tenth of its activations and recomputes "
        "the rest in the backward (uncompiled: each layer's input only); the CPU allocator stays at its defaults "
        "(freed memory goes back to the system instead of being kept for the next step): for bases several times "
        "larger than the machine would otherwise train",
    )
    activation_memory_budget: float = Field(
        1.0, gt=0, le=1, description="compiled: the share of the step's activations kept for the backward; torch's "
        "partitioner recomputes the cheapest of the rest (continued pretraining: 0.65, as fast and 1.4 GB leaner "
        "on SmolLM2-135M)",
    )
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp", description="with several processes (torchrun): ddp = a whole model per process; fsdp = parameters, "
        "gradients and optimizer state sharded (FSDP2), for models that do not fit one device",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list, description="trackers fed the same scalars as metrics.jsonl (the `tracking` extra): "
                                          "TensorBoard under RUN/tensorboard, MLflow at MLFLOW_TRACKING_URI or WORKDIR/mlflow.db")
    eval_every: int = Field(
        50, ge=1, description="validation loss every N steps (left out with max_minutes: further apart when "
                              "evaluations would cost more than 5% of the time budget)")
    eval_batches: int = Field(8, ge=1, description="validation micro-batches per evaluation")
    log_every: int = Field(1, ge=1)
    checkpoint_every_steps: int | None = Field(None, ge=1, description="also checkpoint every N steps")
    checkpoint_every_minutes: float | None = Field(30.0, gt=0, description="also checkpoint every M minutes")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept (older deleted after a save)")
    max_nonfinite_in_a_row: int = Field(5, ge=1, description="stop after this many skipped non-finite steps in a row")
    loss_spike_sigmas: float | None = Field(
        5.0, gt=0, description="warn when a step's loss exceeds the recent mean by this many standard deviations"
    )
    loss_spike_window: int = Field(50, ge=2, description="steps in the loss-spike monitor's window")
    progress: bool = True
    embedding_lr: float | None = Field(
        None, gt=0,
        description="peak LR of the embeddings and output head (None: lr). Continuing SmolLM2-135M on a manual, "
        "lr/10 there cost a tenth of the lift for 1 point less forgetting (recipes/continue.toml)",
    )
    replay_sources: list[Path] = Field(
        default_factory=list, description="folders of general text mixed into training to limit forgetting (replay)"
    )
    replay_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of training blocks drawn from replay_sources")


class EvalConfig(Section):
    """[eval]: held-out measurement after training."""

    max_documents: int = Field(200, ge=1, description="held-out documents measured")
    max_tokens: int = Field(200_000, ge=1, description="stop after this many held-out tokens")
    batch_size: int = Field(8, ge=1)
    samples: int = Field(4, ge=0, description="generated / filled-in samples shown in the report")
    sample_tokens: int = Field(48, ge=1)
    texts: list[Path] = Field(
        default_factory=list,
        description="general text sets (files or folders of .txt/.md/.rst/.html) scored beside the domain: forgetting",
    )
    cloze_probes: int = Field(40, ge=0, description="held-out sentences with a salient domain term masked (0: none)")
    cloze_candidates: int = Field(5, ge=2, description="candidates each cloze probe ranks: the true term + distractors")
    during_training_tokens: int = Field(
        4096, ge=0, description="domain and general tokens scored every [train] eval_every steps (0: off)"
    )


GGUF_QUANTS = ("f16", "bf16", "q8_0")  # what the gguf package writes in Python (export/gguf.py)


class ExportConfig(Section):
    """[export]: the formats written to WORKDIR/model/. The HF directory is always written: every
    other format is made from it and checked against it."""

    formats: list[Literal["hf", "gguf"]] = Field(
        default_factory=lambda: ["hf"], description='"gguf": also model/model-<quant>.gguf and an Ollama Modelfile')
    quant: list[str] = Field(default_factory=lambda: ["q8_0"], description=f"GGUF types: {', '.join(GGUF_QUANTS)}")

    @field_validator("quant", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        for q in value if isinstance(value, list) else []:
            if str(q).lower() not in GGUF_QUANTS:
                raise ValueError(
                    f"{q!r} cannot be written in Python (the gguf package writes {', '.join(GGUF_QUANTS)}); "
                    f"export f16 and quantise with llama.cpp: llama-quantize model/model-f16.gguf "
                    f"model/model-{str(q).lower()}.gguf {str(q).upper()}")
        return [str(q).lower() for q in value] if isinstance(value, list) else value


AUDIT_REPETITIONS = (1, 2, 4, 8, 16)  # copies of each canary in the training stream (The Secret Sharer)


class AuditConfig(Section):
    """[audit]: does the trained model give away its training text? (audit/, `selfsup audit`)

    Canaries change the training stream, so `canaries` is read by the ingest stage: turning it on
    re-ingests (the extraction cache makes that quick) and retrains. The audit itself reads the
    trained model and the corpus and changes nothing.
    """

    enabled: bool = Field(False, description="run the audit as a pipeline stage after eval (else: `selfsup audit WORKDIR`)")
    canaries: bool = Field(False, description="plant random secrets in training documents (after PII scrubbing and "
                                              "de-duplication) to measure their exposure after training")
    canaries_per_repetition: int = Field(4, ge=1, le=64, description="canaries planted at each repetition count")
    repetitions: list[int] = Field(default_factory=lambda: list(AUDIT_REPETITIONS),
                                   description="copies per canary, each in another training document")
    controls: int = Field(8, ge=1, le=256, description="canaries made the same way but never planted: chance, measured")
    profile: Literal["quick", "full"] = Field(
        "quick", description="quick: ~10 CPU-minutes for a 135M model; full: the sizes the papers use")
    seed: int | None = Field(None, description="draws the canaries, the windows and the samples (None: [train] seed)")

    @field_validator("repetitions")
    @classmethod
    def _positive_repetitions(cls, value: list[int]) -> list[int]:
        if not value or any(r < 1 for r in value):
            raise ValueError("each repetition count must be at least 1, e.g. [1, 2, 4, 8, 16]")
        return sorted(set(value))


class Recipe(Section):
    """A whole run: one section per stage."""

    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    pack: PackConfig = Field(default_factory=PackConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @property
    def decoder(self) -> bool:
        """Whether the run trains a causal decoder: clm and fim always; span (alone or in a mix) when it
        continues a decoder base (from scratch, span trains a T5 encoder-decoder)."""
        names = set(self.objective.names)
        if names <= DECODER_OBJECTIVES:
            return True
        return names <= MIXABLE_OBJECTIVES and self.model.base is not None and base_is_decoder(self.model.base)

    @property
    def model_objective(self) -> str:
        """The objective whose model family the run builds, loads and exports: "clm" for every decoder
        run (clm, fim, span on a decoder base, a mix), else the objective itself."""
        return "clm" if self.decoder else self.objective.name

    def _may_train_a_decoder(self) -> bool:
        """`decoder` without reading the base (paths are resolved after validation)."""
        names = set(self.objective.names)
        return names <= DECODER_OBJECTIVES or (names <= MIXABLE_OBJECTIVES and self.model.base is not None)

    @model_validator(mode="after")
    def _mixed_span_needs_a_decoder_base(self) -> Recipe:
        if self.objective.mix and "span" in self.objective.mix and not self._may_train_a_decoder():
            raise ValueError("[objective] mix with span trains a causal decoder: set [model] base to a decoder "
                             "(an HF directory or .gguf); from scratch, span trains a T5 model in a run of its own")
        return self

    @model_validator(mode="after")
    def _gguf_is_for_decoders(self) -> Recipe:
        if "gguf" in self.export.formats and not self._may_train_a_decoder():
            raise ValueError(f'[export] formats: "gguf" is for decoders (objective clm or fim, or span on a decoder '
                             f'base), not {self.objective.name}; remove "gguf" from formats')
        return self

    @model_validator(mode="after")
    def _continued_pretraining_defaults(self) -> Recipe:
        if self.train.lr == "auto" and self.model.base is None:
            raise ValueError('[train] lr = "auto" searches a rate for continuing a base model; set [model] base, '
                             "or give lr a number (from scratch: e.g. 3e-3)")
        if self.train.select != "none" and (self.model.base is None or not self._may_train_a_decoder()):
            raise ValueError(f'[train] select = "{self.train.select}" scores blocks with the base decoder: it needs '
                             '[model] base, a decoder; set select = "none"')
        return apply_continue_defaults(self)


# Continued pretraining ([model] base set): [train] values used where the recipe leaves the key
# unset. recipes/continue.toml gives the reason for each; the from-scratch defaults are TrainConfig's.
CONTINUE_LR = 1e-4  # full fine-tuning: measured on SmolLM2-135M, nearly 3e-4's domain gain without its forgetting
CONTINUE_LORA_LR = 1e-3  # LoRA: adapters start at zero and have few parameters; they take larger steps
CONTINUE_WARMUP_STEPS = 10  # Adam's moment estimates settle; the weights need no slow start
CONTINUE_SCHEDULE = "wsd"  # the peak held, then a cooldown to ~0 at the end of whatever bounds the run
CONTINUE_MIN_LR_RATIO = 0.0  # anneal fully: most of a short continued run's gain is made in the cooldown
CONTINUE_WEIGHT_DECAY = 0.0  # decay pulls a trained model towards zero, away from its base
CONTINUE_COMPILE = True  # SmolLM2-135M at 4×512 on the CPU: 3.1 s a step compiled against 4.3 s eager, but
CONTINUE_COMPILE_MINUTES = 4.0  # a compile costs ~110 s per objective's graph cold (a first run), ~20 s warm: a
# time budget under 4 minutes per objective trains eagerly on the CPU (fim, 3 minutes: 39 steps eager, 20 compiled
# cold, 41 warm; a clm/span mix: 37 eager, 3 cold). At 4 minutes cold and warm runs break even against eager
# (~42 and ~71 steps against ~56). Left unset there, so a GPU still compiles (train/loop.py compile_on).
CONTINUE_BATCH_SIZE = 4  # blocks per step: more updates from the same tokens (a short run is update-bound)
CONTINUE_BETA2 = 0.99  # small batches: a longer second-moment memory, as the same number of tokens
CONTINUE_ACTIVATION_MEMORY_BUDGET = 0.65  # SmolLM2-135M 8×512: 4.9 GB at 755 tokens/s against 6.2 GB at 745
# A sentence encoder continued with contrastive pairs (measured on all-MiniLM-L6-v2, sqlite3-doc, 4 CPU-minutes:
# held-out MRR 0.436 at lr 2e-5, 0.477 at 5e-5, 0.475 at 1e-4, compiled; the base 0.387, BM25 0.350).
CONTINUE_EMBEDDING_LR = 5e-5
CONTINUE_EMBEDDING_BATCH_SIZE = 32  # pairs per step: each query ranks 32 positives and 32 hard negatives
CONTINUE_EMBEDDING_PASSAGE_TOKENS = 128  # what sentence encoders are trained on (all-MiniLM-L6-v2: 128)
CONTINUE_EMBEDDING_COMPILE = False  # batches are cut to their longest text, so shapes vary: eager 2.45 s a step
# (91 steps in 4 minutes, MRR 0.480) against compiled 2.6 s at fixed shapes plus the compile (69 steps)


def apply_continue_defaults(recipe: Recipe) -> Recipe:
    """Fill the continued-pretraining defaults into [train] keys the recipe did not set (in place).

    Idempotent: a value filled in counts as set from then on, so applying twice changes nothing.
    """
    if recipe.model.base is None:
        return recipe
    train, given = recipe.train, recipe.train.model_fields_set
    embedding = "contrastive" in recipe.objective.names
    if "lr" not in given:
        train.lr = CONTINUE_LORA_LR if recipe.model.lora else CONTINUE_EMBEDDING_LR if embedding else CONTINUE_LR
    if "warmup_steps" not in given:
        train.warmup_steps = CONTINUE_WARMUP_STEPS
    short = train.max_minutes is not None and train.max_minutes < CONTINUE_COMPILE_MINUTES * len(recipe.objective.names)
    compile_ = CONTINUE_EMBEDDING_COMPILE if embedding else None if short else CONTINUE_COMPILE
    for key, value in (("schedule", CONTINUE_SCHEDULE), ("min_lr_ratio", CONTINUE_MIN_LR_RATIO),
                       ("weight_decay", CONTINUE_WEIGHT_DECAY), ("compile", compile_),
                       ("batch_size", CONTINUE_EMBEDDING_BATCH_SIZE if embedding else CONTINUE_BATCH_SIZE), ("beta2", CONTINUE_BETA2),
                       ("activation_memory_budget", CONTINUE_ACTIVATION_MEMORY_BUDGET)):
        if key not in given and value is not None:
            setattr(train, key, value)
    if embedding and "passage_tokens" not in recipe.objective.model_fields_set:
        recipe.objective.passage_tokens = CONTINUE_EMBEDDING_PASSAGE_TOKENS
    return recipe


def base_is_decoder(base: Path) -> bool:
    """Whether a base model is a causal decoder: a .gguf file always is (selfsup imports decoders from
    GGUF); an HF directory is when its config.json names a *ForCausalLM architecture and is not an
    encoder-decoder. A missing or unreadable config counts as not a decoder."""
    base = Path(base)
    if base.suffix.lower() == ".gguf":
        return True
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return not config.get("is_encoder_decoder") and any(
        str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])


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
    if path.suffix == ".json":  # a resolved recipe handed to a launched process (`selfsup run --nproc`)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"recipe {path} is not valid JSON: {exc}") from None
        return resolve_paths(recipe_from_dict(raw, origin=str(path)), path.parent.resolve())
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
    recipe.train.replay_sources = [absolute(p) for p in recipe.train.replay_sources]
    recipe.eval.texts = [absolute(p) for p in recipe.eval.texts]
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
