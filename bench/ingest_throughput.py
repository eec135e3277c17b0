"""Files → corpus: the whole ingest stage against the bare extractor, per format, on the same files.

Per format (text, HTML, PDF, DOCX) a folder is generated from Python's own documentation
(`pydoc_data.topics`, always installed): plain .txt files, article pages, text PDFs written by
hand (tests/ingest/make_files.py's minimal PDF writer, several lines per page) and Word
files written with python-docx. Then, on each folder:

- ours: `ingest_sources` with the default [corpus] settings (sandboxed workers on every core;
  decode, ftfy, normalise, quality rules, language, PII, MinHash, exact + near dedup, split,
  Parquet shards, audit, manifest);
- bare: what a user would otherwise run to get the text, in a multiprocessing pool with as many
  processes as our workers. Per format: text, a UTF-8 decode, and charset-normalizer's best guess
  (`from_bytes(...).best()`) for bytes that are not UTF-8 (the generated files are UTF-8, so it is
  the decode); HTML, `trafilatura.extract` (tables on, favour recall: our settings); PDF, pypdfium2
  `get_text_bounded` on every page; DOCX, the text of python-docx's paragraphs.

Both sides are measured warm. The bare pool is started and has imported its libraries before
the clock starts. Ours has a fixed cost per run (spawning and warming the sandboxed workers,
opening and committing the outputs: ~1-2 s) that would swamp small folders, so our rate is the
slope between two runs: the whole folder of N files and its first N/4 files,
(N - N/4) / (t(N) - t(N/4)); the fixed cost cancels and is printed separately (the intercept).
Each timing is the median of `--repeats` runs (3 by default), N and N/4 run in turn.
With `--profile`, a worker's per-document path (`process_file`, in this process) is also timed
by component on each folder: ms per document for decode, mojibake, the format's reader,
normalise, quality rules, language, PII, id, MinHash, and the rest (`other`).
ratio = ours / bare in documents per second, per format; the JSON's `ratio` is the smallest of
HTML, PDF and DOCX (the target is >= 0.5: the whole stage costs at most twice the extraction it
cannot avoid). Plain text is shown too, but its "extractor" is a UTF-8 decode, so there the
ratio only says what cleaning, language, PII and MinHash cost per document. Peak RSS (of the ingest process and of its largest worker,
each in a fresh child) at two text corpus sizes 10x apart shows memory does not grow with size.
The last line is one JSON object with every figure.

    python bench/ingest_throughput.py --quick
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the file writers
from tests.ingest.make_files import pdf_bytes  # noqa: E402

from selfsup.config import CorpusConfig
from selfsup.ingest import ingest_sources
from selfsup.ingest.sandbox import default_workers

FORMATS = ("text", "html", "pdf", "docx")


def bench_common():
    """bench/common.py, imported by the main process only: our sandboxed workers are spawned, so
    they run this module's top level again, and common's imports (the training stack) would add
    ~1 s to every worker's start, and noise to the fixed cost the slope has to cancel."""
    import common

    return common


def paragraphs() -> list[str]:
    """Real prose and code samples, ~4,600 paragraphs (Python's language reference)."""
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        out += [p.strip() for p in topics[name].split("\n\n") if len(p.strip()) > 40]
    return out


def document(paras: list[str], i: int, n: int = 30) -> list[str]:
    """The i-th document: n paragraphs drawn by a generator seeded with i (~7 KB; no near-duplicates)."""
    return [f"Document {i}."] + random.Random(i).sample(paras, n)


def pdf_file(paras: list[str]) -> bytes:
    words = " ".join(paras).split()
    lines = [" ".join(words[i : i + 14]) for i in range(0, len(words), 14)]
    return pdf_bytes([lines[i : i + 48] for i in range(0, len(lines), 48)])


def docx_file(paras: list[str]) -> bytes:
    import docx

    doc = docx.Document()
    for p in paras:
        doc.add_paragraph(p)
    buffer = io.BytesIO()
    doc.save(buffer)
    return buffer.getvalue()


def html_file(paras: list[str]) -> bytes:
    body = "".join(f"<p>{p.replace('&', '&amp;').replace('<', '&lt;')}</p>\n" for p in paras)
    nav = "<nav><ul><li><a href='/'>Home</a></li><li><a href='/docs'>Docs</a></li></ul></nav>"
    return (f"<!doctype html><html><head><title>{paras[0]}</title></head><body>{nav}<main><article>"
            f"<h1>{paras[0]}</h1>{body}</article></main><footer>Copyright ACME</footer></body></html>").encode()


WRITERS = {"text": (".txt", lambda p: "\n\n".join(p).encode()), "html": (".html", html_file),
           "pdf": (".pdf", pdf_file), "docx": (".docx", docx_file)}  # fmt: skip


def make_folder(fmt: str, files: int, offset: int = 0) -> Path:
    """`files` generated documents of one format (cached between runs)."""
    folder = bench_common().CACHE / f"ingest-{fmt}-{files}-{offset}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paras = paragraphs()
    extension, write = WRITERS[fmt]
    for i in range(files):
        (folder / f"doc{i:06d}{extension}").write_bytes(write(document(paras, offset + i)))
    marker.write_text("")
    return folder


def bare_extract(job: tuple[str, str]) -> int:
    """The extractor alone on one file: characters of text out."""
    fmt, path = job
    data = Path(path).read_bytes()
    if fmt == "text":
        try:
            return len(data.decode("utf-8"))
        except UnicodeDecodeError:
            import charset_normalizer

            return len(str(charset_normalizer.from_bytes(data).best() or ""))
    if fmt == "html":
        import trafilatura

        return len(trafilatura.extract(data.decode("utf-8"), include_tables=True, favor_recall=True) or "")
    if fmt == "pdf":
        import pypdfium2 as pdfium

        doc = pdfium.PdfDocument(data)
        text = "".join(doc[i].get_textpage().get_text_bounded() for i in range(len(doc)))
        doc.close()
        return len(text)
    import docx

    return sum(len(p.text) for p in docx.Document(io.BytesIO(data)).paragraphs)


def _warm(_: int) -> None:
    import docx  # noqa: F401
    import pypdfium2  # noqa: F401
    import trafilatura  # noqa: F401


def time_bare(fmt: str, folder: Path, pool: multiprocessing.pool.Pool) -> float:
    jobs = [(fmt, str(p)) for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    t0 = time.perf_counter()
    pool.map(bare_extract, jobs, chunksize=4)
    return time.perf_counter() - t0


def time_ours(folder: Path, out: Path) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    manifest = ingest_sources([folder], out, CorpusConfig())
    return time.perf_counter() - t0, manifest


def median_time(run, repeats: int) -> tuple[float, Any]:
    """The (seconds, result) of the run with the median time among `repeats` runs."""
    runs = sorted((run() for _ in range(repeats)), key=lambda timed: timed[0])
    return runs[len(runs) // 2]


def profile_worker(fmt: str, folder: Path) -> dict[str, float]:
    """CPU ms per document by component of `process_file` on `folder` (run here, not sandboxed):
    the real code path, with each step's function wrapped by a timer where the worker looks it
    up. CPU time (`process_time`), not wall time: a shared machine's other loads drop out."""
    from collections import defaultdict

    from selfsup.clean import mojibake
    from selfsup.ingest import extract, process

    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, function):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start

        return wrapper

    cfg = CorpusConfig()
    process.warm_up(cfg)
    steps = [(extract, "decode_bytes", "decode"), (mojibake, "fix_mojibake", "mojibake"), (process, "normalise_text", "normalise"),
             (process, "quality_reason", "quality"), (process, "detect_language", "language"), (process, "redact", "pii"),
             (process, "document_id", "id"), (process, "minhash_signature", "minhash")]  # fmt: skip
    readers = extract.TEXT_READERS if fmt in extract.TEXT_READERS else extract.BYTES_READERS
    originals = [(module, name, getattr(module, name)) for module, name, _ in steps] + [(readers, fmt, readers[fmt])]
    jobs = [(p.name, fmt, p.read_bytes()) for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    try:
        for module, name, label in steps:
            setattr(module, name, timed(label, getattr(module, name)))
        reader = readers[fmt]
        readers[fmt] = timed("reader", lambda *args: list(reader(*args)))  # a generator: timed to its end
        for job in jobs[:5]:  # warm
            process.process_file(cfg, job)
        spent.clear()
        start = time.process_time()
        for job in jobs:
            process.process_file(cfg, job)
        total = time.process_time() - start
    finally:
        for module, name, function in originals:
            if isinstance(module, dict):
                module[name] = function
            else:
                setattr(module, name, function)
    # the reader of a text format runs inside `extract`, after decode and mojibake
    profile = {name: 1000 * seconds / len(jobs) for name, seconds in spent.items()}
    profile["other"] = 1000 * total / len(jobs) - sum(profile.values())
    profile["total"] = 1000 * total / len(jobs)
    return profile


def slope_times(folder: Path, small: Path, out: Path, repeats: int) -> tuple[tuple[float, dict], tuple[float, dict]]:
    """The median (seconds, manifest) of ours on `folder` and on `small`, run in turn (N, N/4,
    N, N/4, ...) so that a change in the machine's load falls on both ends of the slope alike."""
    runs = [(time_ours(folder, out), time_ours(small, out)) for _ in range(repeats)]
    whole = sorted((r[0] for r in runs), key=lambda timed: timed[0])
    part = sorted((r[1] for r in runs), key=lambda timed: timed[0])
    return whole[repeats // 2], part[repeats // 2]


def child_peak_rss(folder: Path, out: Path) -> tuple[float, float]:
    """(ingest process, largest worker) peak RSS in MB, from a fresh process that only ingests `folder`."""
    shutil.rmtree(out, ignore_errors=True)
    code = (
        "import sys, resource; sys.path.insert(0, 'bench'); import common; from pathlib import Path;"
        "from selfsup.config import CorpusConfig; from selfsup.ingest import ingest_sources;"
        f"ingest_sources([Path({str(folder)!r})], Path({str(out)!r}), CorpusConfig());"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    parent, worker = done.stdout.strip().splitlines()[-1].split()
    return float(parent), float(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small folders: under ~2 minutes on 2 cores")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement; the median is kept")
    parser.add_argument("--profile", action="store_true", help="also time a worker's per-document path by component")
    args = parser.parse_args()
    # Quick sizes: each folder's variable part takes a few seconds, well above the ~1-2 s fixed
    # cost and its noise (with 240 HTML files the work was ~0.6 s: the slope was mostly noise).
    counts = {"text": 800, "html": 960, "pdf": 960, "docx": 480} if args.quick else {"text": 4000, "html": 1500, "pdf": 1500, "docx": 1500}
    rss_files = (100, 1000) if args.quick else (300, 3000)
    workers = default_workers()
    out = bench_common().CACHE / "ingest-out"

    figures: dict[str, dict] = {}
    startups: dict[str, float] = {}
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_warm, range(workers))
        for fmt in FORMATS:
            docs, few = counts[fmt], counts[fmt] // 4
            folder, small = make_folder(fmt, docs), make_folder(fmt, few)  # the same generator: `small` is the first quarter
            mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            bare, _ = median_time(lambda: (time_bare(fmt, folder, pool), None), args.repeats)
            (whole, manifest), (part, _) = slope_times(folder, small, out, args.repeats)
            ours = max(whole - part, 1e-3) * docs / (docs - few)  # seconds for `docs` files, fixed cost excluded
            startups[fmt] = whole - ours
            figures[fmt] = {
                "files": docs, "mb": round(mb, 2), "documents_kept": manifest["documents"], "fixed_s": startups[fmt],
                "docs_per_s": {"ours": docs / ours, "bare": docs / bare}, "mb_per_s": {"ours": mb / ours, "bare": mb / bare},
                "ratio": bare / ours,
            }  # fmt: skip
    profiles = {fmt: profile_worker(fmt, make_folder(fmt, counts[fmt] // 4)) for fmt in FORMATS} if args.profile else {}
    startup = sorted(startups.values())[len(startups) // 2]
    rss = {n: child_peak_rss(make_folder("text", n), out) for n in rss_files}
    shutil.rmtree(out, ignore_errors=True)

    print(f"ingest, default settings, {workers} workers (rate from the slope N/4 -> N files; fixed cost per run ~{startup:.1f} s, excluded); "
          f"bare extractor in a pool of {workers}; medians of {args.repeats}")
    print(f"  {'format':7} {'files':>6} {'MB':>7} {'ours docs/s':>12} {'bare docs/s':>12} {'ours MB/s':>10} {'bare MB/s':>10} {'ratio':>6}")
    for fmt, f in figures.items():
        print(f"  {fmt:7} {f['files']:6d} {f['mb']:7.1f} {f['docs_per_s']['ours']:12.1f} {f['docs_per_s']['bare']:12.1f} "
              f"{f['mb_per_s']['ours']:10.2f} {f['mb_per_s']['bare']:10.2f} {f['ratio']:6.2f}")
    if profiles:
        names = list(dict.fromkeys(name for profile in profiles.values() for name in profile))
        print(f"  a worker's ms per document by component (in this process, on the N/4 folder):\n  {'format':7} " + " ".join(f"{n:>9}" for n in names))
        for fmt, profile in profiles.items():
            print(f"  {fmt:7} " + " ".join(f"{profile.get(n, 0.0):9.3f}" for n in names))
    for n, (parent, worker) in rss.items():
        print(f"  peak RSS at {n} text files ({n * 31} paragraphs): ingest process {parent:.0f} MB, largest worker {worker:.0f} MB")
    ratio = min(figures[fmt]["ratio"] for fmt in ("html", "pdf", "docx"))
    (small, (p_small, w_small)), (large, (p_large, w_large)) = sorted(rss.items())
    bench_common().emit({
        "bench": "ingest_throughput", "workers": workers, "startup_s": startup, "formats": figures, "ratio": ratio,
        "ratio_by_format": {fmt: f["ratio"] for fmt, f in figures.items()},
        "peak_rss_mb": {"small": {"files": small, "process": p_small, "worker": w_small},
                        "large": {"files": large, "process": p_large, "worker": w_large}},
        "rss_growth": max(p_large / p_small, w_large / w_small), "profile_ms_per_doc": profiles,
    })  # fmt: skip


if __name__ == "__main__":
    main()
