"""decode_bytes: bytes become text with a named encoding, or a `binary` / `undecodable` reason."""

import codecs
import random

import pytest

from selfsup.ingest.decode import NotText, decode_bytes

FRENCH = "Le café est très bon. À Noël, nous mangeons des crêpes et du pâté. Ça coûte cher, même à Paris.\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


def reason(data: bytes) -> str:
    with pytest.raises(NotText) as info:
        decode_bytes(data)
    return info.value.reason


def test_utf8_and_boms():
    """Strict UTF-8 first; a BOM decides UTF-8-sig, UTF-16 and UTF-32 (before the NUL-byte test)."""
    assert decode_bytes("naïve".encode()) == ("naïve", "utf-8")
    assert decode_bytes(codecs.BOM_UTF8 + "naïve".encode()) == ("naïve", "utf-8-sig")
    assert decode_bytes("naïve ☃".encode("utf-16")) == ("naïve ☃", "utf-16")
    assert decode_bytes(codecs.BOM_UTF16_BE + "naïve".encode("utf-16-be")) == ("naïve", "utf-16")
    assert decode_bytes("naïve".encode("utf-32")) == ("naïve", "utf-32")


def test_latin1_is_detected_as_windows_1252():
    """A Latin-1 file (no valid UTF-8 multi-byte sequence) is detected; code-page ties go to cp1252."""
    assert decode_bytes(FRENCH.encode("latin-1")) == (FRENCH, "cp1252")


def test_other_legacy_code_page_is_detected():
    """Detection is not hard-wired to Western text: Windows-1251 Russian comes back right."""
    russian = "Привет, как дела? Это текст на русском языке, он длинный. " * 3
    text, encoding = decode_bytes(russian.encode("cp1251"))
    assert text == russian and encoding == "cp1251"


def test_damaged_utf8_keeps_utf8_with_replacement_characters():
    """UTF-8 with a few malformed bytes stays UTF-8: they become U+FFFD, the rest is not garbled."""
    data = "naïve café résumé, ".encode() + b"\xff" + " déjà vu".encode()
    assert decode_bytes(data) == ("naïve café résumé, \ufffd déjà vu", "utf-8-replace")


def test_short_invalid_bytes_never_guessed_as_utf16():
    """Without a BOM and without NUL bytes, a guess of UTF-16 is noise and is not taken."""
    text, encoding = decode_bytes(b"abc\xff")
    assert text.startswith("abc") and not encoding.startswith("utf_16")


def test_binary_signatures_nul_bytes_and_control_noise():
    """PNG/ELF/ZIP signatures, any NUL byte, or >10% control bytes mean `binary`."""
    assert reason(PNG) == "binary"
    assert reason(b"\x7fELF\x02\x01\x01" + b"\x00" * 9) == "binary"
    assert reason(b"PK\x03\x04rest") == "binary"
    assert reason(b"plain text\x00with a NUL") == "binary"
    assert reason(bytes([1, 2, 3, 4, 5]) * 10 + b"text") == "binary"


def test_terminal_colours_are_text():
    """ESC (ANSI colour codes in logs), tabs and form feeds do not make a file binary."""
    text, _ = decode_bytes(b"\x1b[31mred\x1b[0m\tcol\x0cpage\n" * 20)
    assert "red" in text


def test_high_byte_noise_is_undecodable():
    """Bytes that are neither UTF-8 nor any code page charset-normalizer accepts: `undecodable`."""
    noise = bytes(b | 0x80 for b in random.Random(0).randbytes(4000))
    assert reason(noise) == "undecodable"


def test_bom_with_broken_body_is_undecodable():
    """A UTF-16 BOM followed by an odd number of bytes cannot be UTF-16: `undecodable`."""
    assert reason(codecs.BOM_UTF16_LE + b"a\x00b") == "undecodable"
