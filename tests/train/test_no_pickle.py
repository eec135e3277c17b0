"""No pickle: a malicious pickle planted in a checkpoint is refused and never runs, and no source
file can unpickle (checked on the syntax tree, so formatting cannot hide a call)."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

import selfsup
from selfsup.manifest import write_manifest
from selfsup.train import train
from tests.train.conftest import checkpointed_recipe, same_weights, weights
from tests.train.test_checkpoint import said


class _CreatesFile:
    """Unpickling this opens (creates) `target`: the stand-in for arbitrary code execution."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _plant(step: Path, name: str, payload_target: Path, fix_manifest: bool) -> None:
    path = step / name
    if name.endswith(".safetensors"):
        path.write_bytes(pickle.dumps(_CreatesFile(payload_target)))  # a raw pickle under a trusted name
    else:
        torch.save(_CreatesFile(payload_target), path)  # the torch.save zip format of .pt / .bin files
    if fix_manifest:  # the attacker can also rewrite the manifest: the loader must still refuse
        manifest = json.loads((step / "MANIFEST.json").read_text())
        write_manifest(step, stage="checkpoint", fingerprint=manifest["fingerprint"], manifest_name="MANIFEST.json")


def test_the_payload_is_live(tmp_path):
    """Guard against a vacuous test: unpickling the payload really does create its file."""
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(_CreatesFile(canary)))
    assert canary.exists()


@pytest.mark.parametrize("name, fix_manifest, reason", [
    ("model.safetensors", True, "model.safetensors is not a valid safetensors file (it looks like a pickle"),
    ("optimizer.safetensors", False, "bytes, manifest says"),  # the size varies with the tmp path
    ("pytorch_model.bin", True, "unexpected file pytorch_model.bin"),
    ("optimizer.pt", False, "unexpected file optimizer.pt"),
])
def test_planted_pickle_is_refused_and_never_runs(prepared, finished_run, run_copy, tmp_path, capsys,
                                                  name, fix_manifest, reason):
    """A pickle in place of (or beside) a checkpoint file, with or without a matching manifest: the
    checkpoint is skipped as corrupt with the reason, the run resumes from the one before and ends
    with the right weights, and the payload's file never appears."""
    payload = tmp_path / "PWNED"
    _plant(run_copy / "checkpoints" / "step-6", name, payload, fix_manifest)
    train(prepared["shards"], prepared["tokenizer"], run_copy, checkpointed_recipe(prepared), fingerprint="fp")
    err = said(capsys)
    assert "skipping checkpoint" in err and reason in err, err
    assert "resuming from" in err and "step-4" in err
    assert same_weights(weights(run_copy), weights(finished_run))
    assert not payload.exists()


def _unsafe_calls(source: str) -> list[str]:
    """Calls that can unpickle (or run remote code) in one module's syntax tree."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in {"pickle", "_pickle", "cPickle", "dill", "cloudpickle"}:
            if any(a.name in {"load", "loads", "Unpickler"} for a in node.names):
                found.append(f"line {node.lineno}: from {node.module} import load")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        kwargs = {k.arg: k.value for k in node.keywords}

        def is_true(key: str) -> bool:
            return key in kwargs and not (isinstance(kwargs[key], ast.Constant) and kwargs[key].value is False)

        if owner in {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib"} and name in {"load", "loads", "Unpickler"}:
            found.append(f"line {node.lineno}: {owner}.{name}")
        elif name == "read_pickle":
            found.append(f"line {node.lineno}: read_pickle")
        elif owner == "torch" and name == "load":
            w = kwargs.get("weights_only")
            if not (isinstance(w, ast.Constant) and w.value is True):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
        elif name == "load" and is_true("allow_pickle"):
            found.append(f"line {node.lineno}: load(..., allow_pickle=True)")
        if is_true("trust_remote_code"):
            found.append(f"line {node.lineno}: trust_remote_code")
    return found


def test_the_scan_catches_what_it_should():
    bad = """
import pickle, torch, numpy as np
from pickle import loads
pickle.load(f)
torch.load(p)
torch.load(p, weights_only=False)
np.load(p, allow_pickle=True)
AutoModel.from_pretrained(d, trust_remote_code=True)
"""
    good = "torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\nnp.load(p)\n"
    assert len(_unsafe_calls(bad)) == 6
    assert _unsafe_calls(good) == []


def test_no_source_file_can_unpickle():
    """Nothing in src/ calls torch.load without weights_only=True, pickle/dill/joblib load, numpy
    load with allow_pickle=True, pandas read_pickle, or passes trust_remote_code=True."""
    root = Path(selfsup.__file__).parent
    problems = {}
    for path in sorted(root.rglob("*.py")):
        found = _unsafe_calls(path.read_text(encoding="utf-8"))
        if found:
            problems[str(path.relative_to(root))] = found
    assert not problems, problems
