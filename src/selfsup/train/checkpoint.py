"""Atomic, pickle-free checkpoints: `run/checkpoints/step-N/`.

A checkpoint is written into `step-N.partial/`: the model as an HF directory (config.json +
model.safetensors, so `from_pretrained` can load any checkpoint directly), the optimizer state
as safetensors + JSON, RNG states, and `trainer_state.json` (step, tokens, data cursor, config
hash, library versions). Every file is fsynced, `MANIFEST.json` (size and sha256 of each file)
is written last, and only then is the directory renamed to `step-N/`. Older checkpoints are
deleted only after the new one is committed, and the newest `keep` survive.

Trust runs the other way round. A directory is loaded only if its name is `step-N`, its manifest
verifies, it holds no file the manifest does not list, and every file parses as what it claims to
be (safetensors or JSON; nothing is ever unpickled). Everything is read and checked against the
model and optimizer *before* anything is changed, so a checkpoint that fails half-way leaves the
model untouched and the caller can fall back to the previous one.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers.utils import logging as hf_logging

from selfsup.errors import StageFailure
from selfsup.manifest import list_files, read_manifest, verify_manifest, write_manifest
from selfsup.train import faults

CHECKPOINT_MANIFEST = "MANIFEST.json"
STEP_DIR = re.compile(r"^step-(\d+)$")
PARTIAL_DIR = re.compile(r"^step-(\d+)\.partial$")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}  # refused even when the manifest lists them


class CorruptCheckpoint(StageFailure):
    """A checkpoint that cannot be trusted; the message says which file and why."""


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
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write step-N atomically and prune older ones; returns the committed directory.

    `model_state` / `optimizer_state`, when given, are saved instead of the model's and the
    optimizer's own: the full states gathered from sharded (FSDP) training, so that every
    checkpoint has one format whatever wrote it.
    """
    step = int(trainer_state["step"])
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    partial = root / f"step-{step}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    need = _bytes_needed(root, model)
    _check_free_space(root, need)
    hf_logging.disable_progress_bar()  # a bar per save would drown the training progress line
    try:
        partial.mkdir()
        model.save_pretrained(partial, safe_serialization=True, state_dict=model_state)
        tensors, meta = _flatten_optimizer(optimizer_state if optimizer_state is not None else optimizer.state_dict())
        save_file(tensors, partial / "optimizer.safetensors")
        faults.pause_point("save", step)  # test-only: lets a test kill the process mid-save
        faults.disk_full_point(step, partial / "optimizer.safetensors")  # test-only: a full disk
        _write_json(partial / "optimizer.json", meta)
        rng_tensors, rng_meta = _capture_rng()
        save_file(rng_tensors, partial / "rng.safetensors")
        _write_json(partial / "trainer_state.json", {**trainer_state, "rng": rng_meta, "versions": _versions()})
        for p in partial.iterdir():
            _fsync(p)
        write_manifest(partial, stage="checkpoint", fingerprint=fingerprint, manifest_name=CHECKPOINT_MANIFEST)
        _fsync_dir(partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        _fsync_dir(root)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise StageFailure(_save_failed(final, exc, need)) from exc
    _prune(root, keep)
    return final


def iter_checkpoints(run_dir: Path):
    """(path, problem) for every checkpoint directory, newest first; problem is None if it verifies.

    A generator, so that finding the newest good checkpoint hashes only as far back as it must.
    Unfinished saves (`step-N.partial/`) are listed too, always with a problem.
    """
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return
    found = []
    for p in root.iterdir():
        if p.is_dir() and (m := STEP_DIR.match(p.name) or PARTIAL_DIR.match(p.name)):
            found.append((int(m.group(1)), p.name.endswith(".partial"), p))
    for _, is_partial, path in sorted(found, key=lambda t: (t[0], not t[1]), reverse=True):
        yield path, ("an unfinished save (the process stopped while writing it)" if is_partial else _problem(path))


def find_latest(run_dir: Path) -> tuple[Path | None, list[str]]:
    """Newest checkpoint whose manifest verifies, and a note for each newer one that did not."""
    problems: list[str] = []
    for path, problem in iter_checkpoints(run_dir):
        if problem is None:
            return path, problems
        problems.append(f"{path.name}: {problem}")
    return None, problems


def _problem(path: Path) -> str | None:
    """Why a committed-looking `step-N/` cannot be trusted, or None."""
    if not any(path.iterdir()):
        return "empty directory"
    if not (path / CHECKPOINT_MANIFEST).is_file():
        return f"{CHECKPOINT_MANIFEST} is missing (the save never finished, or files were copied without it)"
    manifest = read_manifest(path, CHECKPOINT_MANIFEST)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return f"{CHECKPOINT_MANIFEST} is not readable JSON"
    ok, why = verify_manifest(path, manifest_name=CHECKPOINT_MANIFEST)
    if not ok:
        return why
    listed = set(manifest["files"])
    for p in list_files(path, CHECKPOINT_MANIFEST):
        rel = p.relative_to(path).as_posix()
        if p.suffix in PICKLE_SUFFIXES:
            return f"unexpected file {rel}, a pickle-format file (selfsup checkpoints never hold one)"
        if rel not in listed:
            return f"unexpected file {rel}, not in {CHECKPOINT_MANIFEST}"
    return None


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    *,
    apply_states: Callable[[dict[str, torch.Tensor], dict[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Restore weights, optimizer and RNG states in place; returns trainer_state.json.

    Raises CorruptCheckpoint, with nothing changed, if any file is unreadable or does not fit.
    `apply_states(weights, optimizer_state)` puts the checked full states in place when plain
    `load_state_dict` cannot (a sharded FSDP model takes its shard of each).
    """
    path = Path(path)
    weights = _read_safetensors(path / "model.safetensors")
    _check_weights_fit(path, model, weights)
    optimizer_state = None
    if optimizer is not None:
        meta = _read_json(path / "optimizer.json")
        try:
            optimizer_state = _unflatten_optimizer(_read_safetensors(path / "optimizer.safetensors"), meta)
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptCheckpoint(f"{path.name}/optimizer.json does not describe optimizer.safetensors ({exc})") from None
        _check_optimizer_fits(path, optimizer, optimizer_state)
    state = _read_json(path / "trainer_state.json")
    missing = [k for k in ("step", "tokens", "data") if k not in state]
    if missing:
        raise CorruptCheckpoint(f"{path.name}/trainer_state.json lacks {', '.join(missing)}")
    rng = _read_safetensors(path / "rng.safetensors")
    if "torch_cpu" not in rng or rng["torch_cpu"].shape != torch.get_rng_state().shape:
        raise CorruptCheckpoint(f"{path.name}/rng.safetensors holds no valid torch RNG state")
    # Everything is read and fits: only now change the model, the optimizer and the RNGs.
    if apply_states is not None:
        apply_states(weights, optimizer_state)
    else:
        model.load_state_dict(weights, strict=False)
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
    _restore_rng(rng, state.get("rng", {}))
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; anything else (a pickle above all) is refused, never executed."""
    if not path.is_file():
        raise CorruptCheckpoint(f"{path.parent.name}/{path.name} is missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        with open(path, "rb") as fh:
            head = fh.read(4)
        what = " (it looks like a pickle or torch.save file, which selfsup never loads)" if (
            head[:1] == b"\x80" or head == b"PK\x03\x04") else ""
        raise CorruptCheckpoint(f"{path.parent.name}/{path.name} is not a valid safetensors file{what}: {exc}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path.parent.name}/{path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(f"{path.parent.name}/{path.name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptCheckpoint(f"{path.parent.name}/{path.name} holds a JSON {type(value).__name__}, not an object")
    return value


def _check_weights_fit(path: Path, model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    unexpected = [k for k in weights if k not in expected]
    wrong = [k for k in weights if k in expected and weights[k].shape != expected[k].shape]
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in expected if k not in weights and k not in tied and not _is_tied(model, k)]
    if missing or unexpected or wrong:
        raise CorruptCheckpoint(
            f"{path.name}/model.safetensors does not fit the model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )


def _check_optimizer_fits(path: Path, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Same groups, same sizes, and each moment shaped like its parameter (torch checks only the first two)."""
    groups = optimizer.param_groups
    sizes = [len(g["params"]) for g in groups]
    saved_sizes = [len(g.get("params", [])) for g in saved["param_groups"]]
    if sizes != saved_sizes:
        raise CorruptCheckpoint(f"{path.name}/optimizer.json has parameter groups of sizes {saved_sizes}, the optimizer {sizes}")
    params = [p for g in groups for p in g["params"]]
    for pid, st in saved["state"].items():
        if not 0 <= pid < len(params):
            raise CorruptCheckpoint(f"{path.name}/optimizer.safetensors has state for unknown parameter {pid}")
        for key, value in st.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != params[pid].shape:
                raise CorruptCheckpoint(f"{path.name}/optimizer.safetensors: {key} of parameter {pid} has the wrong shape")


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


def _bytes_needed(root: Path, model: torch.nn.Module) -> int:
    """Disk a new checkpoint takes: the last one's size if there is one, else weights + two Adam moments."""
    previous = sorted(
        ((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))), reverse=True
    )
    for _, path in previous:
        manifest = read_manifest(path, CHECKPOINT_MANIFEST)
        if manifest and isinstance(manifest.get("files"), dict):
            return int(sum(f.get("bytes", 0) for f in manifest["files"].values()) * 1.1) + (1 << 20)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(n_bytes * 3 * 1.2) + (1 << 20)


def _check_free_space(root: Path, need: int) -> None:
    """Refuse to start a save that cannot fit, before a byte is written."""
    free = shutil.disk_usage(root).free
    if free < need:
        raise StageFailure(
            f"not enough disk space for a checkpoint in {root}: {need / 2**20:.0f} MiB needed, "
            f"{free / 2**20:.0f} MiB free; free space and run the same command again to resume"
        )


def _save_failed(final: Path, exc: BaseException, need: int) -> str:
    previous = next((p.name for p, problem in iter_checkpoints(final.parent.parent) if problem is None), None)
    kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        free = shutil.disk_usage(final.parent).free
        return (
            f"disk full while writing checkpoint {final}: it needs about {need / 2**20:.0f} MiB, "
            f"{free / 2**20:.0f} MiB are free; {kept}. Free space and run the same command again to resume"
        )
    return f"could not save checkpoint {final}: {exc}; {kept}"


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
