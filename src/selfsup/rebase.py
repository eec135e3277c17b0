"""`selfsup rebase`: the same recipe, corpus and held-out split, on a new base model.

When a better foundation model ships, the adaptation work should carry over: the corpus (its
extraction, cleaning, de-duplication and audit), the recipe, and the evidence. Rebasing reruns
the recipe of a finished work directory with `[model] base` pointing at the new base, into a new
work directory:

- the corpus is copied over (hard links where the file system allows) and used as it is, so no
  file is extracted again and the held-out documents are the very same ones: the old and the
  new runs are scored on identical evidence (`selfsup compare`);
- the replay corpus, when the recipe has one, is carried over the same way, and so is the audit's
  canaries.json when the corpus was planted with canaries (the new model is audited on the same);
- everything that depends on the base follows the new one: its tokenizer (and the vocabulary
  extension, mined again for it), packing, training, evaluation against the new base, export;
- `rebase.json` in the new work directory records where it came from, so `selfsup compare NEWDIR`
  can put old base, old adapted, new base and new adapted side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from selfsup.config import Recipe, recipe_from_dict
from selfsup.console import esc, say
from selfsup.errors import UsageError
from selfsup.manifest import manifest_digest, read_json_dict, verify_manifest, write_json_atomic
from selfsup.models.identity import display_name
from selfsup.pipeline import LINEAGE_FILE, RECIPE_FILE
from selfsup.train.replay import replay_shards_dir
from selfsup.workdir import Workdir

REBASE_FILE = "rebase.json"


def default_rebase_dir(old: Path, new_base: Path) -> Path:
    """OLD-on-<new base's name>, beside the old work directory."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", display_name(new_base)).strip("-") or "new-base"
    return Path(old).parent / f"{Path(old).name}-on-{slug}"


def rebased_recipe(old: Path, new_base: Path) -> Recipe:
    """The recipe of `old` with `[model] base = new_base`, the tokenizer following the new base."""
    recipe = original_recipe(old)
    recipe = recipe.model_copy(deep=True)
    if recipe.model.base is None:
        say("[yellow]note[/]: the old run trained from scratch; the new one continues the base instead")
    if recipe.tokenizer.from_dir is not None and recipe.tokenizer.from_dir != recipe.model.base:
        say(f"[yellow]note[/]: [tokenizer] from = {esc(recipe.tokenizer.from_dir)} is dropped: a base model is "
            "trained with its own tokenizer")
    recipe.model.base = Path(new_base)
    recipe.tokenizer.from_dir = None
    return recipe


def original_recipe(old: Path) -> Recipe:
    """The recipe as the user gave it (recipe.json); for older work directories, run.json's resolved one."""
    old = Path(old)
    given = old / RECIPE_FILE
    if given.is_file():
        return recipe_from_dict(json.loads(given.read_text(encoding="utf-8")), origin=str(given))
    run_json = Workdir(old).run / "run.json"
    if not run_json.is_file():
        raise UsageError(f"{old} holds no finished run (no {RECIPE_FILE} and no run/run.json); run `selfsup run` there "
                         "first, or rebase another work directory")
    return recipe_from_dict(json.loads(run_json.read_text(encoding="utf-8"))["recipe"], origin=str(run_json))


def check_rebase(old: Path, new_base: Path, new_dir: Path) -> None:
    """Refuse what cannot work before anything is written."""
    old, new_dir, new_base = Path(old), Path(new_dir), Path(new_base)
    if not old.is_dir():
        raise UsageError(f"work directory {old} does not exist")
    if new_dir.resolve() == old.resolve():
        raise UsageError(f"--workdir {new_dir} is the work directory being rebased; give the new run a directory of its own")
    if not (new_base.is_dir() or (new_base.is_file() and new_base.suffix.lower() == ".gguf")):
        raise UsageError(f"--base {new_base} is neither an HF model directory nor a .gguf file")
    ok, why = verify_manifest(Workdir(old).corpus)
    if not ok:
        raise UsageError(f"the corpus of {old} cannot be reused ({why}); finish `selfsup run` there first")
    original_recipe(old)  # readable


def prepare_rebase(old: Path, new_base: Path, new_dir: Path) -> Recipe:
    """Carry the corpus (and replay corpus) over, write rebase.json; returns the recipe to run."""
    check_rebase(old, new_base, new_dir)
    old, new_dir, new_base = Path(old), Path(new_dir), Path(new_base)
    old_wd, new_wd = Workdir(old), Workdir(new_dir)
    recipe = rebased_recipe(old, new_base)
    new_wd.root.mkdir(parents=True, exist_ok=True)
    carry_over(old_wd.corpus, new_wd.corpus)
    if old_wd.canaries.is_file():  # the corpus was planted with them: the new run is audited against the same
        shutil.copy2(old_wd.canaries, new_wd.canaries)
    old_replay = replay_shards_dir(old_wd.shards).parent / "corpus"
    if verify_manifest(old_replay)[0]:
        carry_over(old_replay, replay_shards_dir(new_wd.shards).parent / "corpus")
    lineage = read_json_dict(old / LINEAGE_FILE) or {}
    write_json_atomic(new_wd.root / REBASE_FILE, {
        "from": str(old.resolve()),
        "old_base": (lineage.get("base") or {}).get("given") or _str(original_recipe(old).model.base),
        "new_base": str(new_base),
        "corpus_digest": manifest_digest(old_wd.corpus),
        "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    })
    return recipe


def carry_over(src: Path, dst: Path) -> None:
    """Copy a finished artefact directory (hard links where possible); a verified identical copy is kept."""
    if dst.exists() and manifest_digest(dst) == manifest_digest(src) and verify_manifest(dst)[0]:
        return
    if dst.exists():
        shutil.rmtree(dst)
    tmp = dst.with_name(dst.name + ".copying")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    tmp.rename(dst)
    say(f"[dim]rebase: carried {esc(src)} over to {esc(dst)}")


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link costs no space; the pipeline never rewrites a finished corpus file in place."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def read_rebase(workdir: Path) -> dict[str, Any] | None:
    return read_json_dict(Path(workdir) / REBASE_FILE)



def _str(value: Any) -> str | None:
    return None if value is None else str(value)
