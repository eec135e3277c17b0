"""The demo's corpus: real technical text that ships with every Python, written out as files.

Two parts, so the demo exercises a folder of many documents of two formats:

- `reference/<topic>.txt`: the language reference topics behind `help()` (`pydoc_data.topics`);
- `stdlib/<module>.md`: for each standard-library module, its docstrings as Markdown: the module
  name as `# heading`, the module docstring, then a `## Class`, `## Class.method` or
  `## function` section for each public name that has a docstring.

The standard library is read with `ast`, never imported (importing runs module code: `antigravity`
opens a web browser, `this` prints a poem). Tests, IDLE, lib2to3, turtledemo, site-packages and
caches are skipped; a file that does not parse is skipped. The marker `.complete` is written
last: a folder that has it is finished, and building again does nothing.
"""

from __future__ import annotations

import ast
import gc
import os
import shutil
import sysconfig
from pathlib import Path

MARKER = ".complete"
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "__pycache__"}


def build_sample_corpus(out_dir: Path) -> Path:
    """Write the sample corpus into `out_dir` (created) and return it; a no-op if already complete."""
    out_dir = Path(out_dir)
    if (out_dir / MARKER).is_file():
        return out_dir
    for part in ("reference", "stdlib"):  # a half-written earlier attempt is redone from scratch
        shutil.rmtree(out_dir / part, ignore_errors=True)
    (out_dir / "reference").mkdir(parents=True)
    (out_dir / "stdlib").mkdir()
    files = _write_reference(out_dir / "reference") + _write_stdlib(out_dir / "stdlib")
    (out_dir / MARKER).write_text(f"{files} files\n", encoding="utf-8")
    return out_dir


def _write_reference(folder: Path) -> int:
    from pydoc_data.topics import topics  # data only: a dict of topic → text

    for topic, body in sorted(topics.items()):
        (folder / f"{_safe(topic)}.txt").write_text(body, encoding="utf-8")
    return len(topics)


def _write_stdlib(folder: Path) -> int:
    # Syntax trees hold no reference cycles, so the cycle collector has nothing to find in them;
    # pausing it while ~11 MB of source is parsed saves a quarter of the build time or more.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _write_modules(folder)
    finally:
        if enabled:
            gc.enable()


def _write_modules(folder: Path) -> int:
    written = 0
    for module, path in sorted(stdlib_modules().items()):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):  # e.g. a file for another Python version
            continue
        markdown = module_markdown(module, tree)
        if markdown:
            (folder / f"{module}.md").write_text(markdown, encoding="utf-8")
            written += 1
    return written


def stdlib_modules() -> dict[str, Path]:
    """Module name → source file for the pure-Python standard library (each name once)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    modules: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        rel = Path(folder).relative_to(root)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            parts = [*rel.parts, name[:-3]]
            if parts[-1] == "__init__":
                parts.pop()
            if not parts or not all(p.isidentifier() for p in parts):  # not importable as a module
                continue
            modules.setdefault(".".join(parts), Path(folder) / name)
    return modules


def module_markdown(module: str, tree: ast.Module) -> str:
    """`# module`, its docstring, then one `##` section per public documented class/method/function."""
    sections = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            sections.append((node.name, ast.get_docstring(node)))
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            sections.append((node.name, ast.get_docstring(node)))
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(member.name):
                    sections.append((f"{node.name}.{member.name}", ast.get_docstring(member)))
    module_doc = ast.get_docstring(tree)
    sections = [(name, doc) for name, doc in sections if doc and doc.strip()]
    if not sections and not (module_doc and module_doc.strip()):
        return ""
    lines = [f"# {module}", ""]
    if module_doc and module_doc.strip():
        lines += [module_doc.strip(), ""]
    for name, doc in sections:
        lines += [f"## {name}", "", doc.strip(), ""]
    return "\n".join(lines)


def _public(name: str) -> bool:
    return not name.startswith("_")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
