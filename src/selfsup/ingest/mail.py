"""E-mail: .eml (one message) and .mbox (many; one document each, `path#msgN`).

Parsed with the stdlib `email` package and its default (modern) policy. A message's document is
its subject, a blank line, and its body: the text/plain part, or the text/html part converted to
text when there is no plain one. What is trimmed, where it can be done reliably: quoted replies
(lines starting with `>`, and the "On ... wrote:" line before them), everything after a
signature separator (`-- ` on its own line) or an Outlook "-----Original Message-----" line.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator

from selfsup.config import CorpusConfig
from selfsup.ingest.text import Piece

_ATTRIBUTION = re.compile(r"^\s*(On .{0,300} wrote:|.{0,200} schrieb .{0,100}:|Le .{0,200} a écrit ?:)\s*$")
_FORWARD_CUT = re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE)
_MBOX_FROM = re.compile(rb"^From .*$", re.MULTILINE)


def eml_pieces(data: bytes, cfg: CorpusConfig) -> Iterator[Piece]:
    yield Piece("", message_text(data))


def mbox_pieces(data: bytes, cfg: CorpusConfig) -> Iterator[Piece]:
    """An mbox read from bytes (the stdlib `mailbox` wants a path): a message starts at a
    `From ` line at the start of the file or after a blank line; `>From ` lines are unquoted."""
    starts = [m.start() for m in _MBOX_FROM.finditer(data) if m.start() == 0 or data[max(0, m.start() - 2) : m.start()].endswith(b"\n\n") or data[max(0, m.start() - 4) : m.start()].endswith(b"\r\n\r\n")]
    for number, (start, end) in enumerate(zip(starts, [*starts[1:], len(data)]), start=1):
        raw = data[start:end]
        raw = raw[raw.find(b"\n") + 1 :]  # the From_ line is the envelope, not a header
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)
        try:
            yield Piece(f"#msg{number}", message_text(raw))
        except Exception as exc:  # one bad message costs only itself
            yield Piece(f"#msg{number}", None, f"parse_error: {exc.__class__.__name__}: {exc}"[:300])


def message_text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(message.get("subject", "") or "").strip()
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        try:
            content = body.get_content()
        except (LookupError, UnicodeError, AssertionError):  # an unknown or lying charset
            content = (body.get_payload(decode=True) or b"").decode("utf-8", "replace")
        if body.get_content_type() == "text/html":
            from selfsup.ingest.html import _body_text

            content = _body_text(content)
        text = trim_reply(content).strip()
    return f"{subject}\n\n{text}" if subject else text


def trim_reply(text: str) -> str:
    """The author's own words: quoted lines, attributions and signatures removed."""
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for line in lines:
        if line in ("-- ", "--") or _FORWARD_CUT.match(line):
            break
        if line.lstrip().startswith(">"):
            end = len(kept)  # drop the "On ... wrote:" line just before the quote (and blanks between)
            while end and not kept[end - 1].strip():
                end -= 1
            if end and _ATTRIBUTION.match(kept[end - 1]):
                del kept[end - 1 :]
            continue
        kept.append(line)
    return "\n".join(kept)
