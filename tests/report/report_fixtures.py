"""Report inputs as the other stages write them, field for field, to build test work directories from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfsup.config import Recipe

HELDOUT_TRAINED_BPB = 1.8421
HELDOUT_UNIGRAM_BPB = 2.9713  # trained is 38.0% lower
SAMPLE_PROMPT = "To reset the pump controller, "
SAMPLE_COMPLETION = "hold the red button for five seconds"
SAMPLE_REFERENCE = "press and hold RESET until the lamp blinks"


def corpus_manifest() -> dict[str, Any]:
    return {
        "stage": "ingest",
        "fingerprint": "f" * 64,
        "created": "2025-01-01T00:00:00Z",
        "files": {"documents-00000.parquet": {"bytes": 1234, "sha256": "0" * 64}},
        "documents": 120,
        "train_documents": 114,
        "validation_documents": 6,
        "characters": 512_345,
        "bytes": 530_000,
        "files_seen": 130,
        "audit": {"ingested": 120, "dropped": 7, "duplicate": 3},
        "dropped": {"empty": 2, "binary": 3, "unsupported_type": 2, "duplicate": 3},
        "encodings": {"utf-8": 118, "cp1252": 2},
        "sources": ["/data/manuals"],
    }


def audit_lines() -> list[dict[str, Any]]:
    lines = [{"path": f"manuals/page-{i:03d}.txt", "status": "ingested", "reason": None, "doc_id": f"d{i:04d}"}
             for i in range(120)]
    lines += [{"path": f"manuals/empty-{i}.txt", "status": "dropped", "reason": "empty", "doc_id": None} for i in range(2)]
    lines += [{"path": f"manuals/blob-{i}.bin", "status": "dropped", "reason": "binary", "doc_id": None} for i in range(3)]
    lines += [{"path": f"manuals/slides-{i}.key", "status": "dropped", "reason": "unsupported_type", "doc_id": None}
              for i in range(2)]
    lines += [{"path": f"manuals/copy-{i}.txt", "status": "duplicate", "reason": "duplicate", "doc_id": f"d{i:04d}"}
              for i in range(3)]
    return lines


def metrics_lines(steps: int = 60, eval_every: int = 20) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        lines.append({
            "step": step, "loss": 9.0 - 5.0 * step / steps, "lr": 3e-3 * min(1.0, step / 10),
            "tokens": step * 4096, "tokens_per_s": 12_000.0 + step, "grad_norm": 1.0, "elapsed_s": step * 0.34,
        })
        if step % eval_every == 0:
            lines.append({"step": step, "val_loss": 9.2 - 5.0 * step / steps, "tokens": step * 4096})
    return lines


def run_json() -> dict[str, Any]:
    return {
        "objective": "clm", "preset": "tiny", "parameters": 1_234_567, "precision": "bf16", "compile": False,
        "steps": 60, "tokens": 245_760, "elapsed_s": 20.4, "tokens_per_s": 12_047.0, "mfu": None, "device": "cpu",
        "recipe": Recipe().model_dump(mode="json", by_alias=True),
    }


def eval_json() -> dict[str, Any]:
    def scores(bpb: float) -> dict[str, Any]:
        return {"loss": bpb * 2.1, "perplexity": 2.718 ** (bpb * 2.1), "bits_per_byte": bpb,
                "tokens": 20_000, "bytes": 61_000, "documents": 6}
    return {
        "objective": "clm",
        "sets": {"heldout": {"trained": scores(HELDOUT_TRAINED_BPB), "unigram": scores(HELDOUT_UNIGRAM_BPB)}},
        "samples": [{"prompt": SAMPLE_PROMPT, "completion": SAMPLE_COMPLETION, "reference": SAMPLE_REFERENCE}],
    }


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def write_jsonl(path: Path, records: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_full_workdir(root: Path) -> Path:
    """Every input the report reads, as a finished `selfsup run` leaves them."""
    write_json(root / "corpus" / "manifest.json", corpus_manifest())
    write_jsonl(root / "corpus" / "audit.jsonl", audit_lines())
    write_json(root / "shards" / "index.json", {
        "seq_len": 256, "dtype": "uint16", "vocab_size": 8192,
        "splits": {"train": {"blocks": 900, "tokens": 230_400, "documents": 114, "dropped_tail_tokens": 77},
                   "validation": {"blocks": 40, "tokens": 10_240, "documents": 6, "dropped_tail_tokens": 12}},
    })
    write_json(root / "shards" / "manifest.json", {
        "stage": "pack", "fingerprint": "e" * 64, "created": "2025-01-01T00:00:00Z",
        "files": {"train-00000.npy": {"bytes": 460_800, "sha256": "1" * 64}},
        "train_tokens": 230_400, "validation_tokens": 10_240,
    })
    write_jsonl(root / "run" / "metrics.jsonl", metrics_lines())
    write_json(root / "run" / "run.json", run_json())
    write_json(root / "eval.json", eval_json())
    return root
