"""Render the report: inputs → sections → `report.html.j2` → one self-contained HTML file.

The page references nothing outside itself (CSS inline, plots as data URIs, no scripts, no web
fonts), so it can be mailed, archived or opened on a machine without network. Every piece of text
from the inputs passes through Jinja's autoescape: documents are hostile, and a `<script>` in one
must show as text. The file is written to a temporary name and renamed, so a reader never sees
half a page.
"""

from __future__ import annotations

import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

import selfsup
from selfsup.errors import UsageError
from selfsup.report import sections
from selfsup.report.inputs import ReportInputs, read_inputs
from selfsup.report.lift import lift_section
from selfsup.report.privacy import privacy_section
from selfsup.report.retrieval import retrieval_section

TEMPLATE = "report.html.j2"


def build_report(workdir: Path, out_path: Path | None = None) -> Path:
    """Write the report of `workdir` to `out_path` (default `workdir/report.html`) and return its path.

    Missing or damaged inputs give a "not available" note in their section, never an error; only a
    work directory that does not exist is refused (`UsageError`).
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise UsageError(f"work directory {workdir} does not exist; pass the folder that `selfsup run` wrote")
    out_path = Path(out_path) if out_path is not None else workdir / "report.html"
    if out_path.is_dir():
        raise UsageError(f"report path {out_path} is a directory; pass a file name such as {out_path / 'report.html'}")
    html = render_report(read_inputs(workdir), out_path)
    _write_text_atomic(out_path, html)
    return out_path


def render_report(inputs: ReportInputs, out_path: Path) -> str:
    """The page as a string; `out_path` is only used to make the link to the model relative."""
    context = {
        "title": f"selfsup report: {inputs.workdir.resolve().name}",
        "summary": sections.guarded(sections.summary_section, inputs, "the work directory"),
        "training": sections.guarded(sections.training_section, inputs, "run/run.json or run/metrics.jsonl"),
        "lift": sections.guarded(lift_section, inputs, "eval.json or run/metrics.jsonl"),
        "retrieval": sections.guarded(retrieval_section, inputs, "eval.json"),
        "evaluation": sections.guarded(sections.evaluation_section, inputs, "eval.json"),
        "privacy": sections.guarded(privacy_section, inputs, "audit.json"),
        "samples": sections.guarded(sections.samples_section, inputs, "eval.json"),
        "corpus": sections.guarded(sections.corpus_section, inputs, "corpus/manifest.json or corpus/audit.jsonl"),
        "recipe": sections.guarded(sections.recipe_section, inputs, "run/run.json"),
        "model": _model_link(inputs, out_path),
        "workdir": str(inputs.workdir.resolve()),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "version": selfsup.__version__,
    }
    return _template().render(**context)


def _template() -> jinja2.Template:
    source = resources.files("selfsup.report").joinpath(TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(
        autoescape=True,  # from_string has no file name to guess from: escape everything, always
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.from_string(source)


def _model_link(inputs: ReportInputs, out_path: Path) -> dict[str, Any]:
    """A link to the exported model directory, relative to the page so the pair can move together."""
    if inputs.model_dir.value is None:
        return {"missing": inputs.model_dir.missing}
    model_dir = inputs.model_dir.value.resolve()
    try:
        rel = Path(os.path.relpath(model_dir, out_path.resolve().parent)).as_posix()
        href = "./" + quote(rel) + "/"  # "./" so no path segment can ever read as a URL scheme
    except ValueError:  # another drive on Windows
        href = model_dir.as_uri() + "/"
    return {"path": str(model_dir), "href": href, "card_href": href + "README.md"}


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
