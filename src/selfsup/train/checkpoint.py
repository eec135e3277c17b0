"""Atomic, pickle-free checkpoints: `run/checkpoints/step-N/`.

A checkpoint is written into `step-N.partial/`: the model as an HF directory (config.json +
model.safetensors, so `from_pretrained` can load any checkpoint directly), the optimizer state
as safetensors + JSON, RNG states, and `trainer_state.json` (step, tokens, data cursor, config
hash, library versions). Every file is fsynced, `MANIFEST.json` (size and sha256 of each file)
is written last, and only then is the directory renamed to `step-N/`. A directory without a
manifest that verifies is never loaded. Older checkpoints are deleted only after the new one is
committed, and the newest `keep` survive.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers.utils import logging as hf_logging

from selfsup.errors import StageFailure
from selfsup.manifest import verify_manifest, write_manifest

CHECKPOINT_MANIFEST = "MANIFEST.json"
STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    fingerprint: str,
    keep: int = 2,
) -> Path:
    """Write step-N atomically and prune older ones; returns the committed directory."""
    step = int(trainer_state["step"])
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    partial = root / f"step-{step}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    _check_free_space(root, model, optimizer)
    hf_logging.disable_progress_bar()  # a bar per save would drown the training progress line
    try:
        partial.mkdir()
        model.save_pretrained(partial, safe_serialization=True)
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, partial / "optimizer.safetensors")
        _write_json(partial / "optimizer.json", meta)
        rng_tensors, rng_meta = _capture_rng()
        save_file(rng_tensors, partial / "rng.safetensors")
        _write_json(partial / "trainer_state.json", {**trainer_state, "rng": rng_meta, "versions": _versions()})
        for p in partial.iterdir():
            _fsync(p)
        write_manifest(partial, stage="checkpoint", fingerprint=fingerprint, manifest_name=CHECKPOINT_MANIFEST)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        _fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise StageFailure(f"could not save checkpoint {final}: {exc}; the previous checkpoint is intact") from exc
    _prune(root, keep)
    return final


def find_latest(run_dir: Path) -> tuple[Path | None, list[str]]:
    """Newest checkpoint whose manifest verifies, and a note for each newer one that did not."""
    root = checkpoints_dir(run_dir)
    problems: list[str] = []
    if not root.is_dir():
        return None, problems
    steps = sorted(
        ((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()),
        reverse=True,
    )
    for _, path in steps:
        ok, why = verify_manifest(path, manifest_name=CHECKPOINT_MANIFEST)
        if ok:
            return path, problems
        problems.append(f"{path.name}: {why}")
    return None, problems


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Restore weights, optimizer and RNG states in place; returns trainer_state.json."""
    path = Path(path)
    weights = load_file(path / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied and not _is_tied(model, k)]
    if missing or unexpected:
        raise StageFailure(f"checkpoint {path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if optimizer is not None:
        meta = json.loads((path / "optimizer.json").read_text())
        optimizer.load_state_dict(_unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta))
    state = json.loads((path / "trainer_state.json").read_text())
    _restore_rng(load_file(path / "rng.safetensors"), state.get("rng", {}))
    return state


def _is_tied(model: torch.nn.Module, key: str) -> bool:
    """A key absent from the file because it shares storage with the input embedding."""
    if not key.endswith("weight") or not hasattr(model, "get_output_embeddings"):
        return False
    out = model.get_output_embeddings()
    inp = model.get_input_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight and key.startswith(
        tuple(n for n, m in model.named_modules() if m is out)
    )


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().contiguous().clone()
            else:
                scalars[f"state.{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta.get("scalars", {}).items()]:
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    version, py_state, gauss = random.getstate()
    meta = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if "numpy" in meta and "numpy_keys" in tensors:
        n = meta["numpy"]
        keys = tensors["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python" in meta:
        p = meta["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _versions() -> dict[str, str]:
    import transformers

    import selfsup

    return {
        "selfsup": selfsup.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
    }


def _check_free_space(root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Refuse to start a save that cannot fit: weights + two Adam moments, with a margin."""
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    need = int(n_bytes * 3 * 1.2) + (1 << 20)
    free = shutil.disk_usage(root).free
    if free < need:
        raise StageFailure(
            f"not enough disk space for a checkpoint in {root}: {need / 2**20:.0f} MiB needed, "
            f"{free / 2**20:.0f} MiB free; free space and run the same command again to resume"
        )


def _prune(root: Path, keep: int) -> None:
    steps = sorted(
        ((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))), reverse=True
    )
    for _, path in steps[max(keep, 1) :]:
        try:
            shutil.rmtree(path)
        except OSError:
            pass  # a failed deletion must not stop training; the next prune tries again


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
