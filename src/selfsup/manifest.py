"""Manifests: the commit marker of every artefact directory.

A stage writes its files first and its manifest last. The manifest lists every file with its
size and sha256, plus the stage's *fingerprint*: a hash of its settings and of its inputs'
manifests. A directory whose manifest is missing, lists a file that is absent or different, or
carries another fingerprint is not trusted: the stage is redone. This makes a killed stage safe
(no manifest, so nothing downstream reads its half-written files) and makes `selfsup run` skip
exactly the stages whose inputs and settings did not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json_dict(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary name, fsync, then rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def list_files(directory: Path, manifest_name: str = MANIFEST) -> list[Path]:
    """Every regular file under `directory` except the manifest itself and temporary files."""
    directory = Path(directory)
    out = []
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != manifest_name and not p.name.endswith(".tmp"):
            out.append(p)
    return out


def write_manifest(
    directory: Path,
    *,
    stage: str,
    fingerprint: str,
    extra: dict[str, Any] | None = None,
    manifest_name: str = MANIFEST,
) -> dict[str, Any]:
    """Hash every file in `directory` and write the manifest last (atomically)."""
    directory = Path(directory)
    files = {}
    for p in list_files(directory, manifest_name):
        files[p.relative_to(directory).as_posix()] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
    manifest = {
        "stage": stage,
        "fingerprint": fingerprint,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        **(extra or {}),
    }
    write_json_atomic(directory / manifest_name, manifest)
    return manifest


def read_manifest(directory: Path, manifest_name: str = MANIFEST) -> dict[str, Any] | None:
    path = Path(directory) / manifest_name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verify_manifest(
    directory: Path, fingerprint: str | None = None, manifest_name: str = MANIFEST
) -> tuple[bool, str]:
    """(ok, reason). Checks presence, fingerprint, and the size and sha256 of every listed file."""
    directory = Path(directory)
    manifest = read_manifest(directory, manifest_name)
    if manifest is None:
        return False, f"{directory / manifest_name} is missing or unreadable"
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        return False, "settings or inputs changed since it was made"
    for rel, meta in manifest.get("files", {}).items():
        path = directory / rel
        if not path.is_file():
            return False, f"{rel} is missing"
        if path.stat().st_size != meta["bytes"]:
            return False, f"{rel} has {path.stat().st_size} bytes, manifest says {meta['bytes']}"
        if file_sha256(path) != meta["sha256"]:
            return False, f"{rel} does not match its sha256"
    return True, "verified"


def manifest_digest(directory: Path, manifest_name: str = MANIFEST) -> str | None:
    """A hash of a finished artefact (its fingerprint and file digests): what downstream stages key on."""
    manifest = read_manifest(directory, manifest_name)
    if manifest is None:
        return None
    blob = json.dumps({"fingerprint": manifest.get("fingerprint"), "files": manifest.get("files")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
