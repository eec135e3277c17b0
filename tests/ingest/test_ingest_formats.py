"""Every format reader, on files built in the test: the text a reader would read, in order."""

import io
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from make_files import docx_bytes, eml_bytes, html_only_eml, mbox_bytes, pdf_bytes, pptx_bytes, tar_bytes, zip_bytes

from selfsup.config import CorpusConfig
from selfsup.ingest.extract import extract, format_of
from selfsup.ingest.mail import trim_reply
from selfsup.ingest.text import Dropped

CFG = CorpusConfig()


def texts(data: bytes, name: str, cfg: CorpusConfig = CFG) -> dict[str, str | None]:
    return {p.where: (p.text if p.text is not None else p.error) for p in extract(data, name, cfg).pieces}


def test_pdf_pages_in_order():
    """PDF: every page's text, in page order, pages separated by a blank line."""
    assert texts(pdf_bytes(["First page text", "Second page text"]), "a.pdf") == {"": "First page text\n\nSecond page text"}


def test_pdf_encrypted_and_truncated():
    """A password-protected PDF is `encrypted`; a truncated one is a `parse_error`."""
    with pytest.raises(Dropped) as info:
        extract(pdf_bytes(["secret"], encrypt=True), "a.pdf", CFG)
    assert info.value.reason == "encrypted"
    whole = pdf_bytes(["Some text"])
    with pytest.raises(Dropped) as info:
        extract(whole[: len(whole) // 2], "a.pdf", CFG)
    assert info.value.reason.startswith("parse_error: ")


def test_docx_paragraphs_and_table_rows_in_document_order():
    """DOCX: paragraphs and the table (row by row, cells joined by |) where they stand."""
    data = docx_bytes(["Before the table.", "After the table."], [["part", "count"], ["valve", "2"]])
    assert texts(data, "a.docx") == {"": "Before the table.\n\npart | count\nvalve | 2\n\nAfter the table."}


def test_pptx_slide_text_and_notes():
    """PPTX: each slide's title and body, then its speaker notes; slides in order."""
    data = pptx_bytes([("Pumps", "Close the valve", "Say it twice"), ("Seals", "Replace yearly", "")])
    assert texts(data, "a.pptx") == {"": "Pumps\nClose the valve\nSay it twice\n\nSeals\nReplace yearly"}


def test_office_file_that_is_not_a_zip():
    """An encrypted Office file is an OLE container: `encrypted`."""
    with pytest.raises(Dropped) as info:
        extract(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "a.docx", CFG)
    assert info.value.reason == "encrypted"


def test_eml_subject_body_quotes_and_signature_trimmed():
    """E-mail: subject + plain body; quoted reply, its attribution and the signature are trimmed."""
    body = "Thanks, the pump works now.\n\nOn Mon, 1 Jan 2024, Bob wrote:\n> Did you try the valve?\n> Bob\n\n-- \nAnn\nACME Corp"
    assert texts(eml_bytes("Re: pump", body), "m.eml") == {"": "Re: pump\n\nThanks, the pump works now."}


def test_eml_html_body_is_converted():
    """A message with only an HTML body: its text, without tags or scripts."""
    data = html_only_eml("News", "<html><body><p>Valve <b>closed</b>.</p><script>junk()</script></body></html>")
    text = texts(data, "m.eml")[""]
    assert text.startswith("News\n\n") and "Valve closed." in text and "junk" not in text and "<" not in text


def test_mbox_one_document_per_message():
    """mbox: one piece per message, `#msgN`; a body line starting with From is unquoted."""
    data = mbox_bytes([eml_bytes("One", "First body.\nFrom here on it works."), eml_bytes("Two", "Second body.")])
    assert texts(data, "box.mbox") == {
        "#msg1": "One\n\nFirst body.\nFrom here on it works.",
        "#msg2": "Two\n\nSecond body.",
    }


def test_csv_and_parquet_text_columns():
    """CSV and Parquet: one piece per row from the configured columns; no such column → parse_error."""
    cfg = CorpusConfig(text_columns=["title", "body"])
    csv = "id,title,body\n1,Valve,Close it\n2,,\n3,Seal,\"Line one\nline two\"\n".encode()
    assert texts(csv, "t.csv", cfg) == {"#row1": "Valve\n\nClose it", "#row2": "", "#row3": "Seal\n\nLine one\nline two"}
    buffer = io.BytesIO()
    pq.write_table(pa.table({"body": ["alpha", None], "n": [1, 2]}), buffer)
    assert texts(buffer.getvalue(), "t.parquet", cfg) == {"#row1": "alpha", "#row2": ""}
    with pytest.raises(Dropped, match=r"parse_error: no column text \(columns: id, title, body\)"):
        extract(csv, "t.csv", CFG)


def test_code_is_verbatim_and_formats_are_configurable():
    """Code by extension is kept as is (no mojibake repair); extensions turn formats on and off."""
    source = "def f(x):\n    return x  # cafÃ©\n"
    assert texts(source.encode(), "m.py") == {"": source}
    assert texts("cafÃ© au lait".encode(), "m.txt") == {"": "café au lait"}
    assert format_of("a.py", CorpusConfig(code_extensions=[])) is None
    assert format_of("a.pdf", CorpusConfig(extensions=[".txt"])) is None
    assert format_of("A.TAR.GZ", CFG) == "tar" and format_of("x.tgz", CFG) == "tar"


def test_zip_and_tar_members_recursively():
    """Archives: members read in memory and named `!member`; nested archives recurse; jsonl inside works."""
    inner = zip_bytes({"deep/c.txt": b"Inner text."})
    data = zip_bytes({"a.txt": b"Alpha text.", "sub/b.md": b"# Beta", "inner.zip": inner, "r.jsonl": b'{"text": "rec"}\n', "x.bin": b"?"})
    assert texts(data, "a.zip") == {
        "!a.txt": "Alpha text.",
        "!sub/b.md": "# Beta",
        "!inner.zip!deep/c.txt": "Inner text.",
        "!r.jsonl#line1": "rec",
        "!x.bin": "unsupported_type",
    }
    assert texts(tar_bytes({"a.txt": b"Tar text.", "b.pdf": pdf_bytes(["In a tar"])}), "a.tar.gz") == {
        "!a.txt": "Tar text.",
        "!b.pdf": "In a tar",
    }


def test_zip_slip_members_are_never_read():
    """Members named with `..` or an absolute path are `unsafe_path`; the others are read."""
    data = zip_bytes({"../evil.txt": b"x", "/etc/passwd.txt": b"x", "a/../../b.txt": b"x", "C:\\win.txt": b"x", "ok.txt": b"fine"})
    got = texts(data, "slip.zip")
    assert got.pop("!ok.txt") == "fine"
    assert set(got.values()) == {"unsafe_path"} and len(got) == 4
    tar = tar_bytes({"../../evil.txt": b"x", "good.txt": b"fine"}, mode="w")
    assert texts(tar, "s.tar") == {"!../../evil.txt": "unsafe_path", "!good.txt": "fine"}


def test_zip_bomb_stops_at_the_caps():
    """Decompressed bytes are counted as read: ratio, total bytes and member count caps each stop a bomb."""
    from make_files import zip_bomb

    bomb = zip_bomb(members=3, member_bytes=8 << 20)  # 24 MiB of zeros in ~25 KiB
    assert len(bomb) < 100_000
    got = texts(bomb, "bomb.zip")
    assert set(got.values()) == {"archive_limit: compression ratio over 200"}
    capped = CorpusConfig(max_archive_ratio=1e9, max_archive_bytes=10 << 20)
    got = texts(bomb, "bomb.zip", capped)
    assert got["!zeros1.txt"] == f"archive_limit: more than {10 << 20} bytes decompressed" and "!zeros2.txt" not in got
    many = zip_bytes({f"f{i}.txt": b"tiny text" for i in range(50)})
    got = texts(many, "many.zip", CorpusConfig(max_archive_members=10))
    assert len(got) == 11 and got["!f10.txt"] == "archive_limit: more than 10 members; the rest are not read"


def test_nested_archives_stop_at_the_depth_limit():
    data = zip_bytes({"a.zip": zip_bytes({"b.zip": zip_bytes({"c.txt": b"deep"})})})
    assert texts(data, "n.zip", CorpusConfig(max_archive_depth=1)) == {"!a.zip!b.zip": "archive_limit: archives nested deeper than 1"}
    assert texts(data, "n.zip") == {"!a.zip!b.zip!c.txt": "deep"}


def test_stored_member_lying_about_its_size_is_a_parse_error():
    """A corrupted member (bad CRC) costs only itself."""
    data = bytearray(zip_bytes({"a.txt": b"Alpha text here", "b.txt": b"Beta"}, compression=zipfile.ZIP_STORED))
    data[data.index(b"Alpha")] = ord("X")
    got = texts(bytes(data), "c.zip")
    assert got["!a.txt"].startswith("parse_error: ") and got["!b.txt"] == "Beta"


def test_trim_reply_keeps_unquoted_text():
    assert trim_reply("Hi\n> quoted\nmine") == "Hi\nmine"
    assert trim_reply("a -- b\n--\nsig") == "a -- b"
