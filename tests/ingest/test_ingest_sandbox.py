"""Sandboxed extraction: a file that hangs, crashes or explodes in memory costs only itself,
and the output does not depend on the number of workers."""

import json
import os

import pyarrow.parquet as pq
import pytest
from make_files import HOSTILE_READERS, docx_bytes, eml_bytes, mbox_bytes, pdf_bytes, pptx_bytes, zip_bomb, zip_bytes

from selfsup.config import CorpusConfig
from selfsup.ingest import ingest_sources

GOOD = "The intake valve is closed before the housing is opened, and the residual fluid is drained."
HOOKS = {".hang": "hostile_readers:hang", ".crash": "hostile_readers:crash", ".segv": "hostile_readers:segfault",
         ".balloon": "hostile_readers:balloon", ".fine": "hostile_readers:fine"}  # fmt: skip


@pytest.fixture
def hostile_readers(tmp_path, monkeypatch):
    """Readers that hang, exit, segfault or allocate without end, reached through [corpus] readers."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "hostile_readers.py").write_text(HOSTILE_READERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "hooks"))  # spawned workers inherit sys.path


def audit_of(corpus):
    return [json.loads(line) for line in (corpus / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


def test_hostile_files_each_cost_only_themselves(tmp_path, hostile_readers):
    """hang → timeout, os._exit → worker crashed, segfault → SIGSEGV, runaway allocation → memory;
    broken PDFs, bombs, slips, a 2 GB sparse file, a 200 MB line, fifos, link loops: each its reason,
    and every good file around them is ingested."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.hang", "b.crash", "c.segv", "d.balloon"):
        (docs / name).write_text("payload", encoding="utf-8")
    (docs / "e.fine").write_text(GOOD + " After the hostile readers.", encoding="utf-8")
    (docs / "enc.pdf").write_bytes(pdf_bytes(["secret"], encrypt=True))
    whole = pdf_bytes(["Truncated document text"])
    (docs / "trunc.pdf").write_bytes(whole[: len(whole) // 2])
    (docs / "ok.pdf").write_bytes(pdf_bytes(["A readable page about the pump seal and its service interval."]))
    (docs / "bomb.zip").write_bytes(zip_bomb(members=2, member_bytes=4 << 20))
    (docs / "slip.zip").write_bytes(zip_bytes({"../../etc/evil.txt": b"x", "/abs.txt": b"y"}))
    with open(docs / "sparse.txt", "wb") as fh:  # 2 GB on paper, nothing on disk
        os.truncate(fh.fileno(), 2 * 2**30)
    with open(docs / "line200.txt", "wb") as fh:  # a real 200 MB single line, over the file cap
        block = b"a" * (8 << 20)
        for _ in range(25):
            fh.write(block)
    (docs / "line3.txt").write_bytes(b"word " * (600_000))  # 3 MB single line, under the file cap, over the line cap
    os.mkfifo(docs / "pipe.txt")
    os.symlink("loop.txt", docs / "loop.txt")  # a link to itself
    with open(os.path.join(os.fsencode(docs), b"z_caf\xe9.txt"), "wb") as fh:
        fh.write(GOOD.encode() + b" The last file, with a Latin-1 name.")
    cfg = CorpusConfig(
        readers=HOOKS, workers=2, timeout_seconds=4, memory_mb=1024, max_file_bytes=8 << 20,
        max_line_chars=1 << 20, validation_fraction=0.0,
    )  # fmt: skip
    manifest = ingest_sources([docs], tmp_path / "corpus", cfg)
    lines = {row["path"].removeprefix(f"{docs}/"): (row["status"], row["reason"]) for row in audit_of(tmp_path / "corpus")}
    assert lines == {
        "a.hang": ("dropped", "timeout"),
        "b.crash": ("dropped", "parse_error: worker crashed (exit code 3)"),
        "bomb.zip": ("dropped", "no_usable_records"),
        "bomb.zip!zeros0.txt": ("dropped", "archive_limit: compression ratio over 200"),
        "bomb.zip!zeros1.txt": ("dropped", "archive_limit: compression ratio over 200"),
        "c.segv": ("dropped", "parse_error: worker crashed (SIGSEGV)"),
        "d.balloon": ("dropped", "memory"),
        "e.fine": ("ingested", None),
        "enc.pdf": ("dropped", "encrypted"),
        "line200.txt": ("dropped", "too_large"),
        "line3.txt": ("dropped", "filtered:long_line"),
        "loop.txt": ("dropped", "symlink"),
        "ok.pdf": ("ingested", None),
        "pipe.txt": ("dropped", "not_a_file"),
        "slip.zip": ("dropped", "no_usable_records"),
        "slip.zip!../../etc/evil.txt": ("dropped", "unsafe_path"),
        "slip.zip!/abs.txt": ("dropped", "unsafe_path"),
        "sparse.txt": ("dropped", "too_large"),
        "trunc.pdf": ("dropped", "parse_error: Failed to load document (PDFium: Data format error)."),
        "z_caf\\xe9.txt": ("ingested", None),
    }
    assert manifest["documents"] == 3 and manifest["worker_restarts"] == 3  # MemoryError is caught: no restart
    assert manifest["workers_started"] <= 2 + 3


def test_symlink_loop_when_links_are_followed(tmp_path):
    """Followed links: a link to itself is `unreadable` (ELOOP), not a hang."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(GOOD, encoding="utf-8")
    os.symlink("loop.txt", docs / "loop.txt")
    ingest_sources([docs], tmp_path / "corpus", CorpusConfig(follow_symlinks=True, workers=1))
    assert [r["reason"] for r in audit_of(tmp_path / "corpus")] == [None, "unreadable: Too many levels of symbolic links"]


def mixed_folder(root):
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    parts = ["pump", "valve", "seal", "gasket", "bolt", "filter"]
    for i, part in enumerate(parts):
        (docs / f"note{i}.txt").write_text(f"Note {i} is about the {part}, serviced every {i + 2} months by the {part} team. " + GOOD, encoding="utf-8")
    (docs / "note_copy.txt").write_text(f"Note 2 is about the seal, serviced every 4 months by the seal team. {GOOD}", encoding="utf-8")
    (docs / "a.pdf").write_bytes(pdf_bytes(["The PDF page one about gaskets.", "Page two about bolts."]))
    (docs / "b.docx").write_bytes(docx_bytes(["Word paragraph on maintenance."], [["k", "v"], ["torque", "20 Nm"]]))
    (docs / "c.pptx").write_bytes(pptx_bytes([("Slide", "Body of the slide", "Notes of the slide")]))
    (docs / "sub" / "m.mbox").write_bytes(mbox_bytes([eml_bytes("Hi", "Mail one."), eml_bytes("Yo", "Mail two, call +41 44 668 18 00.")]))
    (docs / "sub" / "z.zip").write_bytes(zip_bytes({"in.txt": b"Zipped note.", "../x.txt": b"x"}))
    (docs / "sub" / "code.py").write_text("print('hello')\n", encoding="utf-8")
    return docs


def test_same_output_with_0_1_or_2_workers(tmp_path):
    """Results are put back in walk order: shards and audit are identical for any worker count."""
    docs = mixed_folder(tmp_path)
    outputs = []
    for workers in (0, 1, 2):
        out = tmp_path / f"corpus{workers}"
        manifest = ingest_sources([docs], out, CorpusConfig(workers=workers, validation_fraction=0.3))
        table = pq.read_table(out / "documents" / "part-00000.parquet").to_pylist()
        outputs.append((table, (out / "audit.jsonl").read_text(encoding="utf-8"), manifest["fingerprint"]))
        assert manifest["workers_started"] <= workers and manifest["worker_restarts"] == 0
    assert outputs[0] == outputs[1] == outputs[2]
    sources = [row["source"].removeprefix(f"{docs}/") for row in outputs[0][0]]
    assert sources == [
        "a.pdf", "b.docx", "c.pptx", "note0.txt", "note1.txt", "note2.txt", "note3.txt", "note4.txt", "note5.txt",
        "sub/code.py", "sub/m.mbox#msg1", "sub/m.mbox#msg2", "sub/z.zip!in.txt",
    ]  # fmt: skip
    assert "<PHONE>" in outputs[0][0][11]["text"]
