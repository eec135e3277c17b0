"""Fixture files built at run time (no binaries committed): PDFs, Office files, mail, archives, bombs."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path


def pdf_bytes(pages: list[str] | list[list[str]], encrypt: bool = False) -> bytes:
    """A minimal hand-written PDF in Helvetica: each page is a line of text, or a list of lines
    (bench/ingest_throughput.py writes full pages). `encrypt` adds an /Encrypt dictionary whose
    password check fails for the empty password (so a reader needs one)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, page in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        lines = [page] if isinstance(page, str) else page
        shown = " ".join(f"({_pdf_escape(line)}) Tj 0 -14 Td" for line in lines)
        stream = f"BT /F1 11 Tf 56 740 Td {shown} ET".encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    if encrypt:
        objects.append(b"<< /Filter /Standard /V 1 /R 2 /O <" + b"41" * 32 + b"> /U <" + b"42" * 32 + b"> /P -4 >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    extra = b""
    if encrypt:
        extra = b" /Encrypt %d 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]" % len(objects)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, extra, xref)
    return bytes(out)


def _pdf_escape(line: str) -> str:
    line = line.encode("latin-1", "replace").decode("latin-1")
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def docx_bytes(paragraphs: list[str], table: list[list[str]]) -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph(paragraphs[0])
    grid = document.add_table(rows=len(table), cols=len(table[0]))
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            grid.cell(r, c).text = value
    for paragraph in paragraphs[1:]:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes(slides: list[tuple[str, str, str]]) -> bytes:
    """(title, body, notes) per slide."""
    import pptx

    deck = pptx.Presentation()
    for title, body, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = notes
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def eml_bytes(subject: str, body: str, html: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "Ann <ann@example.com>"
    message["To"] = "bob@example.com"
    message["Subject"] = subject
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return bytes(message)


def html_only_eml(subject: str, html: str) -> bytes:
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content(html, subtype="html")
    return bytes(message)


def mbox_bytes(messages: list[bytes]) -> bytes:
    return b"".join(b"From someone@example.com Mon Jan  1 00:00:00 2024\n" + m.replace(b"\nFrom ", b"\n>From ") + b"\n" for m in messages)


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bomb(members: int, member_bytes: int) -> bytes:
    """`members` members of `member_bytes` zeros each: about 1000:1 deflate, built in bounded memory."""
    buffer = io.BytesIO()
    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(members):
            with archive.open(f"zeros{i}.txt", "w", force_zip64=True) as fh:
                for _ in range(member_bytes // len(block)):
                    fh.write(block)
    return buffer.getvalue()


HOSTILE_READERS = '''
import ctypes, os, time

def hang(data, cfg):
    time.sleep(3600)

def crash(data, cfg):
    os._exit(3)

def segfault(data, cfg):
    ctypes.string_at(0)

def balloon(data, cfg):
    blocks = []
    while True:
        blocks.append(bytearray(256 * 2**20))

def fine(data, cfg):
    return [data.decode()]
'''


def mixed_folder(root, variant: int = 0):
    """A folder of real formats with exact and near duplicates, records and a file that is skipped.

    `variant` 1 grows and changes it: a new file, a changed file, a renamed file (same bytes),
    and the deleted original of a duplicate (so its copy must now be kept).
    """
    from pydoc_data.topics import topics

    names = sorted(topics)
    docs = Path(root) / "docs"
    (docs / "sub").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names[:12]):
        (docs / f"topic{i:02d}.txt").write_text(topics[name][:4000], encoding="utf-8")
    (docs / "sub" / "copy_of_topic03.txt").write_text(topics[names[3]][:4000], encoding="utf-8")
    (docs / "sub" / "near_topic04.md").write_text("Exported again\n\n" + topics[names[4]][:4000], encoding="utf-8")
    (docs / "page.html").write_text(f"<html><body><article><p>{topics[names[20]][:3000]}</p></article></body></html>", encoding="utf-8")
    (docs / "records.jsonl").write_text("\n".join(json.dumps({"text": topics[n][:1500]}) for n in names[30:36]), encoding="utf-8")
    (docs / "report.pdf").write_bytes(pdf_bytes(["Pump maintenance report page one", "Replace the seal ring every six months"]))
    (docs / "image.bin").write_bytes(b"\x00\x01binary")
    if variant:
        (docs / "topic03.txt").unlink()  # the copy in sub/ is no longer a duplicate
        (docs / "topic05.txt").write_text("Changed: " + topics[names[40]][:3000], encoding="utf-8")
        (docs / "topic07.txt").rename(docs / "sub" / "moved07.txt")
        (docs / "new_a.txt").write_text(topics[names[50]][:3000], encoding="utf-8")
        (docs / "sub" / "new_b.rst").write_text(topics[names[51]][:3000], encoding="utf-8")
    return docs


def corpus_snapshot(corpus) -> dict:
    """Everything a fresh run and an incremental or sharded run must agree on: every shard's rows
    (all columns, in order), the audit lines, and the manifest's counts (not times or cache counters)."""
    import pyarrow.parquet as pq

    from selfsup.ingest import corpus_parts

    corpus = Path(corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    volatile = {"created", "files", "seconds", "extract_seconds", "merge_seconds", "files_extracted", "files_reused",
                "extraction_shards", "workers", "worker_restarts", "workers_started"}  # fmt: skip
    return {
        "shards": {p.name: pq.read_table(p).to_pylist() for p in corpus_parts(corpus)},
        "audit": (corpus / "audit.jsonl").read_text(),
        "manifest": {k: v for k, v in manifest.items() if k not in volatile},
    }
