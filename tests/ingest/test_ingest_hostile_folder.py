"""A hostile folder: every kind of bad input ends as its exact audit line, and nothing raises."""

import errno
import json
import os
import sys
from pathlib import Path

import pytest

from selfsup.config import CorpusConfig
from selfsup.dedup import document_id
from selfsup.errors import UsageError
from selfsup.ingest import extract, ingest_sources, read, read_documents

MANUAL = "Pump manual.\n\nClose the intake valve before opening the housing.\nDrain the residual fluid."
FRENCH = "Le café est très bon. À Noël, nous mangeons des crêpes et du pâté. Ça coûte cher, même à Paris.\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
PAGE = """<!doctype html><html><head><title>Servicing</title></head><body>
<header><h1>ACME Intranet</h1></header>
<nav><ul><li><a href="/">Home</a></li><li><a href="/a">MenuItemAlpha</a></li><li><a href="/b">MenuItemBeta</a></li></ul></nav>
<main><article><h2>Servicing the P-200 pump</h2>
<p>Close the intake valve before opening the housing of the pump. Drain the residual fluid into the grey container.</p>
<p>Replace the seal ring every six months, or sooner when the pressure gauge shows a drop of more than ten percent.</p>
</article></main>
<footer><p>FooterCopyright 2024 ACME Corp. All rights reserved.</p></footer>
<script>var junk = "ScriptJunk";</script></body></html>"""
RECORDS = "\n".join(
    [
        json.dumps({"text": "First record: the compressor log for March.", "id": 1}),
        '{"text": "broken',
        json.dumps({"body": "no text field here"}),
        json.dumps({"text": "Second record: the compressor log for April."}),
        "",
        json.dumps({"text": MANUAL}),  # same text as manual.txt, seen earlier in the walk
        json.dumps({"text": "   "}),
        json.dumps({"text": 42}),
    ]
)
NON_UTF8_NAME = b"caf\xe9.txt"
CAP = 1 << 20

# name (as the audit shows it, relative to the folder) → (status, reason); reasons are exact.
EXPECTED = {
    "a_manual.txt": ("ingested", None),
    "b_copy.txt": ("duplicate", "duplicate_of:{manual}"),
    "c_crlf.txt": ("duplicate", "duplicate_of:{manual}"),
    "big.txt": ("dropped", "too_large"),
    "blank.txt": ("dropped", "empty"),
    "blob.bin": ("dropped", "unsupported_type"),
    "broken_utf8.txt": ("ingested", None),
    "caf\\xe9.txt": ("ingested", None),
    "empty.txt": ("dropped", "empty"),
    "guide.rst": ("ingested", None),
    "image.txt": ("dropped", "binary"),
    "latin1.txt": ("ingested", None),
    "link.txt": ("dropped", "symlink"),
    "locked.txt": ("dropped", "unreadable: Permission denied"),
    "noise.txt": ("dropped", "undecodable"),
    "notes.md": ("ingested", None),
    "nul.txt": ("dropped", "binary"),
    "page.html": ("ingested", None),
    "pipe.txt": ("dropped", "not_a_file"),
    "records.jsonl": ("ingested", None),
    "sub/deeper.md": ("ingested", None),
    "tiny.txt": ("dropped", "too_short"),
    "utf16.txt": ("ingested", None),
}


def make_hostile_folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a_manual.txt").write_text(MANUAL, encoding="utf-8")
    (docs / "b_copy.txt").write_text(MANUAL, encoding="utf-8")
    (docs / "c_crlf.txt").write_bytes(MANUAL.replace("\n", "  \r\n").encode() + b"\r\n\r\n")
    (docs / "notes.md").write_text("# Notes\n\n- valves\n- seals\n", encoding="utf-8")
    (docs / "guide.rst").write_text("Guide\n=====\n\nSee the pump manual.\n", encoding="utf-8")
    (docs / "page.html").write_text(PAGE, encoding="utf-8")
    (docs / "records.jsonl").write_text(RECORDS, encoding="utf-8")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "blank.txt").write_text("  \n\t\n \r\n", encoding="utf-8")
    (docs / "image.txt").write_bytes(PNG)
    (docs / "nul.txt").write_bytes(b"looks like text\x00but has a NUL byte")
    (docs / "latin1.txt").write_bytes(FRENCH.encode("latin-1"))
    (docs / "utf16.txt").write_bytes("Unicode in UTF-16 with a BOM: naïve ☃".encode("utf-16"))
    (docs / "broken_utf8.txt").write_bytes("naïve café résumé, ".encode() + b"\xff" + " déjà vu".encode())
    (docs / "noise.txt").write_bytes(bytes(b | 0x80 for b in __import__("random").Random(0).randbytes(4000)))
    (docs / "blob.bin").write_bytes(b"some bytes")
    (docs / "tiny.txt").write_text("ok", encoding="utf-8")
    (docs / "locked.txt").write_text("secret", encoding="utf-8")
    (docs / "sub" / "deeper.md").write_text("A document one folder down.", encoding="utf-8")
    os.symlink(docs / "a_manual.txt", docs / "link.txt")
    os.mkfifo(docs / "pipe.txt")
    with open(docs / "big.txt", "wb") as fh:  # sparse: 2 GB on paper, nothing on disk
        os.truncate(fh.fileno(), 2 * 2**30)
    with open(os.path.join(os.fsencode(docs), NON_UTF8_NAME), "wb") as fh:
        fh.write("A file whose name is Latin-1, not UTF-8.".encode())
    return docs


@pytest.fixture
def deny_locked(monkeypatch):
    """Opening locked.txt fails with EACCES (chmod 000 would not stop root, who runs the tests)."""
    real = read.open_fd

    def open_fd(path, flags):
        if os.fsencode(path).endswith(b"locked.txt"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, flags)

    monkeypatch.setattr(read, "open_fd", open_fd)


@pytest.fixture
def ingested(tmp_path, deny_locked):
    docs = make_hostile_folder(tmp_path)
    cfg = CorpusConfig(max_file_bytes=CAP, min_chars=5, validation_fraction=0.2)
    manifest = ingest_sources([docs], tmp_path / "corpus", cfg)
    audit = [json.loads(line) for line in (tmp_path / "corpus" / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    return docs, tmp_path / "corpus", manifest, audit


def test_every_file_has_its_exact_audit_line(ingested):
    """Each input file appears exactly once in the audit, with the documented status and reason."""
    docs, _, _, audit = ingested
    file_lines = [row for row in audit if "#line" not in row["path"]]
    names = [row["path"].removeprefix(str(docs) + "/") for row in file_lines]
    assert sorted(names) == sorted(EXPECTED) and len(names) == len(set(names))
    manual = document_id(MANUAL)
    for row, name in zip(file_lines, names):
        status, reason = EXPECTED[name]
        assert (row["status"], row["reason"]) == (status, reason and reason.format(manual=manual)), name
    assert names == sorted(names), "the walk is in sorted order"


def test_duplicates_point_at_the_kept_first_occurrence(ingested):
    """A copy and a CRLF/trailing-space variant are duplicates of the first file, by its id."""
    docs, corpus, _, audit = ingested
    rows = {row["path"]: row for row in audit}
    manual = rows[f"{docs}/a_manual.txt"]["doc_id"]
    assert manual == document_id(MANUAL)
    assert rows[f"{docs}/c_crlf.txt"]["doc_id"] == manual
    sources = [d["source"] for d in read_documents(corpus) if d["id"] == manual]
    assert sources == [f"{docs}/a_manual.txt"]


def test_jsonl_records_are_documents_and_bad_lines_are_audited(ingested):
    """Good records become `path#lineN` documents; bad ones get their own audit line with detail."""
    docs, corpus, _, audit = ingested
    jsonl = f"{docs}/records.jsonl"
    record_lines = {row["path"]: (row["status"], row["reason"]) for row in audit if row["path"].startswith(jsonl + "#")}
    status, reason = record_lines.pop(f"{jsonl}#line2")
    assert status == "dropped" and reason.startswith("parse_error: not valid JSON (")
    assert record_lines == {
        f"{jsonl}#line3": ("dropped", "parse_error: no field 'text'"),
        f"{jsonl}#line6": ("duplicate", f"duplicate_of:{document_id(MANUAL)}"),
        f"{jsonl}#line7": ("dropped", "empty"),
        f"{jsonl}#line8": ("dropped", "parse_error: field 'text' is a number, not a string"),
    }
    kept = {d["source"]: d["text"] for d in read_documents(corpus) if d["source"].startswith(jsonl)}
    assert kept == {
        f"{jsonl}#line1": "First record: the compressor log for March.",
        f"{jsonl}#line4": "Second record: the compressor log for April.",
    }


def test_decoded_texts_and_html_main_text(ingested):
    """Legacy, UTF-16 and damaged UTF-8 files decode right; HTML keeps the article, not the menu."""
    docs, corpus, manifest, _ = ingested
    texts = {Path(d["source"]).name: d["text"] for d in read_documents(corpus)}
    assert texts["latin1.txt"] == FRENCH.strip()
    assert texts["utf16.txt"] == "Unicode in UTF-16 with a BOM: naïve ☃"
    assert texts["broken_utf8.txt"] == "naïve café résumé, \ufffd déjà vu"
    assert texts["caf\\xe9.txt"] == "A file whose name is Latin-1, not UTF-8."
    page = texts["page.html"]
    assert "Replace the seal ring every six months" in page
    for boilerplate in ("MenuItemAlpha", "MenuItemBeta", "FooterCopyright", "ScriptJunk"):
        assert boilerplate not in page
    assert manifest["encodings"] == {"utf-8": 12, "cp1252": 1, "utf-16": 1, "utf-8-replace": 1}


def test_manifest_counts(ingested):
    """The manifest's counts agree with the audit and the corpus."""
    _, corpus, manifest, audit = ingested
    docs = list(read_documents(corpus))
    assert manifest["documents"] == len(docs) == 11
    assert manifest["train_documents"] + manifest["validation_documents"] == len(docs)
    assert manifest["validation_documents"] >= 1 and manifest["train_documents"] >= 1
    assert manifest["characters"] == sum(len(d["text"]) for d in docs)
    assert manifest["bytes"] == sum(len(d["text"].encode()) for d in docs)
    assert manifest["files_seen"] == len(EXPECTED)
    assert sum(manifest["audit"].values()) == len(audit)
    assert manifest["dropped"] == {
        "too_large": 1, "empty": 3, "unsupported_type": 1, "binary": 2, "symlink": 1, "unreadable": 1,
        "undecodable": 1, "not_a_file": 1, "too_short": 1, "parse_error": 3, "duplicate": 3,
    }  # fmt: skip


def test_followed_symlink_is_read(tmp_path):
    """With follow_symlinks a link to a file is read (here: found to duplicate its target)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(MANUAL, encoding="utf-8")
    os.symlink(docs / "a.txt", docs / "b.txt")
    os.symlink(docs, docs / "loop")  # a link back up must not loop forever
    ingest_sources([docs], tmp_path / "corpus", CorpusConfig(follow_symlinks=True))
    audit = [json.loads(x) for x in (tmp_path / "corpus" / "audit.jsonl").read_text().splitlines()]
    assert [(Path(r["path"]).name, r["status"]) for r in audit] == [("a.txt", "ingested"), ("b.txt", "duplicate")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod 000 files")
def test_real_permission_denied(tmp_path):
    """A file the user may not read is `unreadable: Permission denied`, and the run goes on."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(MANUAL, encoding="utf-8")
    (docs / "b.txt").write_text("private", encoding="utf-8")
    (docs / "b.txt").chmod(0)
    try:
        ingest_sources([docs], tmp_path / "corpus", CorpusConfig())
    finally:
        (docs / "b.txt").chmod(0o644)
    audit = [json.loads(x) for x in (tmp_path / "corpus" / "audit.jsonl").read_text().splitlines()]
    assert audit[1]["reason"] == "unreadable: Permission denied"


def test_a_crashing_reader_drops_only_that_file(tmp_path, monkeypatch):
    """An unexpected exception in a reader becomes that file's `parse_error`, never a crash (in-process: workers=0)."""
    from selfsup.ingest import html

    def explode(text, cfg):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(html, "pieces", explode)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.html").write_text(PAGE, encoding="utf-8")
    (docs / "b.txt").write_text(MANUAL, encoding="utf-8")
    monkeypatch.setitem(extract.TEXT_READERS, "html", explode)
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(workers=0))
    audit = [json.loads(x) for x in (tmp_path / "corpus" / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["reason"] == "parse_error: RecursionError: maximum recursion depth exceeded"
    assert manifest["documents"] == 1


def test_nothing_usable_is_a_usage_error_after_the_audit(tmp_path):
    """All files dropped: UsageError saying why and where to look; the audit is already written."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.bin").write_bytes(b"x")
    (docs / "b.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (docs / "c.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        ingest_sources([docs], tmp_path / "corpus", CorpusConfig())
    message = str(info.value)
    assert "3 files seen, all dropped (2 unsupported_type, 1 empty)" in message
    assert "audit.jsonl" in message and ".txt" in message and "\n" not in message
    assert len((tmp_path / "corpus" / "audit.jsonl").read_text().splitlines()) == 3
    assert not (tmp_path / "corpus" / "manifest.json").exists()


def test_missing_source_and_empty_folder_are_usage_errors(tmp_path):
    """A source that does not exist, or a folder with no files, is named in a UsageError."""
    with pytest.raises(UsageError, match="nope.*does not exist"):
        ingest_sources([tmp_path / "nope"], tmp_path / "corpus", CorpusConfig())
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UsageError, match="empty.*is empty"):
        ingest_sources([tmp_path / "empty"], tmp_path / "corpus", CorpusConfig())


def test_output_inside_the_source_is_not_ingested(tmp_path):
    """`selfsup ingest . --out corpus`: the corpus folder is not input, so a rerun sees the same files."""
    (tmp_path / "a.txt").write_text(MANUAL, encoding="utf-8")
    first = ingest_sources([tmp_path], tmp_path / "corpus", CorpusConfig())
    second = ingest_sources([tmp_path], tmp_path / "corpus", CorpusConfig())
    assert first["files_seen"] == second["files_seen"] == 1
    assert first["fingerprint"] == second["fingerprint"]



def test_tree_deeper_than_the_recursion_limit(tmp_path):
    """A folder nested deeper than Python's recursion limit is walked (the walk keeps its own stack).

    The limit is set to CPython's default for the test: torch.compile, run by earlier tests, raises it
    for the whole process, and a tree deeper than that would outgrow the file system's path length."""
    docs = tmp_path / "docs"
    levels = [docs]
    previous_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    for _ in range(sys.getrecursionlimit() + 50):  # pathlib's mkdir(parents=True) would recurse
        levels.append(levels[-1] / "d")
    made = []
    try:
        for level in levels:
            os.mkdir(level)
            made.append(level)
        (levels[-1] / "bottom.txt").write_text(MANUAL, encoding="utf-8")
        (docs / "top.txt").write_text("At the top.", encoding="utf-8")
        manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(), progress=True)
        assert manifest["documents"] == 2 and manifest["files_seen"] == 2
    finally:  # shutil.rmtree (and pytest's clean-up of old temp folders) recurse: remove bottom-up here
        sys.setrecursionlimit(previous_limit)
        (levels[-1] / "bottom.txt").unlink(missing_ok=True)
        for level in reversed(made[1:]):
            os.rmdir(level)
