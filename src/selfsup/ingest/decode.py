"""Bytes → text, or a reason why not (`binary`, `undecodable`).

Order of attempts, first that succeeds wins (the name is counted in the manifest's `encodings`):

1. a byte-order mark: `utf-8-sig`, `utf-32`, `utf-16` (UTF-16/32 are full of NUL bytes, so the
   BOM is looked at before the binary test);
2. binary: a known binary signature (PNG, JPEG, GIF, PDF, ZIP, gzip, ELF, ...), any NUL byte, or
   more than 10% control bytes in the first 8 KiB → `binary` (so UTF-16 without a BOM counts
   as binary: it cannot be told from binary data reliably);
3. strict `utf-8`;
4. damaged UTF-8 → `utf-8-replace`: when the file holds at least as many well-formed non-ASCII
   UTF-8 characters as malformed bytes, it is UTF-8 with a few broken bytes; those become U+FFFD
   (guessing a legacy code page would garble every other non-ASCII character instead);
5. charset-normalizer's detection (legacy code pages such as Windows-1252, Latin-1, Shift-JIS,
   Windows-1251); among equally good single-byte guesses Windows-1252 wins, the most common
   legacy encoding of Western documents;
6. otherwise → `undecodable`.
"""

from __future__ import annotations

import codecs
import re

import charset_normalizer

SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
    b"PK\x03\x04",  # ZIP, docx, xlsx, jar
    b"\x1f\x8b",  # gzip
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # zstd
    b"7z\xbc\xaf\x27\x1c",
    b"\x7fELF",
    b"\xcf\xfa\xed\xfe",  # Mach-O
    b"\xca\xfe\xba\xbe",  # Mach-O fat / Java class
    b"SQLite format 3\x00",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # old MS Office
)  # (formats whose signature is plain ASCII, like RIFF or ID3, are caught by their NUL bytes)
_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Bytes that do not occur in text: C0 controls except \t \n \v \f \r and ESC (ANSI colours).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape turns malformed bytes into


class NotText(Exception):
    """The bytes are not text; `reason` is the audit reason (`binary` or `undecodable`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding name) for `data`, or raise NotText (see the module docstring for the order)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                raise NotText("undecodable") from None
    if looks_binary(data):
        raise NotText("binary")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    escaped = data.decode("utf-8", "surrogateescape")
    malformed = _NOT_UTF8.subn("", escaped)[1]  # counted without a list: files can be large
    well_formed_non_ascii = len(escaped) - len(escaped.encode("ascii", "ignore")) - malformed
    if well_formed_non_ascii >= malformed:
        return data.decode("utf-8", "replace"), "utf-8-replace"
    detected = _detect(data)
    if detected is None:
        raise NotText("undecodable")
    return detected


def looks_binary(data: bytes) -> bool:
    """A binary signature, a NUL byte, or > 10% control bytes in the first 8 KiB."""
    if data.startswith(SIGNATURES) or b"\x00" in data:
        return True
    head = data[:8192]
    if not head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > 0.10 * len(head)


def _detect(data: bytes) -> tuple[str, str] | None:
    # There is no NUL byte (see looks_binary), so the bytes are not UTF-16/32 text of any script
    # that has ASCII in it: such guesses are noise on short inputs and are left out.
    matches = [m for m in charset_normalizer.from_bytes(data) if not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        return None
    best = matches[0]
    # charset-normalizer breaks ties between code pages that decode these bytes equally well
    # arbitrarily (Windows-1250 vs -1252 for French); prefer Windows-1252 among the tied.
    for match in matches:
        if match.chaos <= best.chaos and match.coherence >= best.coherence and "cp1252" in match.could_be_from_charset:
            try:
                return data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                break
    return str(best), best.encoding
