"""PII scrubbing: typed placeholders for what identifies people or unlocks systems.

    <SECRET>  private-key blocks, AWS / GitHub / Slack / OpenAI-style keys, JWTs, and the value of
              `password=`, `api_key: ...`, `token = ...` assignments
    <EMAIL>   addresses
    <IBAN>    IBANs whose ISO 13616 mod-97 check passes
    <CARD>    13–19 digit card numbers (one run, or groups of 4 split by one kind of space or
              dash) whose Luhn check passes
    <IP>      IPv4 and IPv6 addresses (validated by `ipaddress`)
    <PHONE>   international (`+41 44 668 18 00`), bracketed (`(555) 123-4567`), North-American
              (`555-123-4567`) and national trunk-prefixed (`030 1234 5678`) numbers

A built-in rule set, run in that order, no model download. It lowers the risk of a model
memorising these strings; it is not a guarantee: names, addresses and free-form identifiers are
not found, and unusual formats slip through. Checksums keep most false positives (order numbers,
version strings) out.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from selfsup.clean.filters import CASE_TWINS

# Each pattern with the literals one of which it cannot match without: a plain `in` test (fast,
# C speed) skips the pattern on the many texts that hold none, with the same result.
_SECRETS = [
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----", re.DOTALL), ("-----BEGIN",)),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("AKIA", "ASIA")),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"), ("github_pat_",)),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), ("xox",)),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"), ("sk-",)),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), ("eyJ",)),
]  # fmt: skip
_SECRET_WORDS = ("key", "secret", "token", "pass", "pwd")  # one is in every `_ASSIGNED_SECRET` name
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|password|passwd|pwd)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"'<>]{8,})"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# 13-19 digits in one run, or in groups of 4 (4-6-5 for Amex) with one separator used throughout:
# "3506 2013-03-15 20" (a size, a date and an hour in a listing) is not a card, nor are digits
# glued to letters or a decimal point (`0x7f...e1`, `5.551115123125783e-017`).
_CARD = re.compile(
    r"(?<![\w.-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{4,5})(?![\w-]|\.\d)"
)
_IPV4 = re.compile(r"(?<!\d)(?<!\d\.)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # +41 44 668 18 00
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567
    r"|0\d{2,4}[ /-]\d{3,4}[ -]?\d{2,4}"  # 030 1234 5678
    r")(?![\w])"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")
# Looser patterns that every match of the rule above contains: each starts with a character class
# or a literal, which the regex engine scans for quickly, so a text without any candidate costs one
# fast pass. tests/clean/test_fast_paths.py compares `redact` with the version without them.
# `\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`, found from its first dot (one digit before it is enough
# for a match to exist): a pattern that starts with a literal is scanned for fastest.
_MAYBE_IPV4 = re.compile(r"\.(?<=\d\.)\d{1,3}\.\d{1,3}\.\d{1,3}")
# (_MAYBE_IPV6 is defined below the rules: a `::` next to a hex digit, or eight full groups.)
_FULL_IPV6 = re.compile(r":(?<=[0-9A-Fa-f]:)[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){6}")  # 8 groups, from the first colon
_HEX = frozenset("0123456789ABCDEFabcdef")
_MAYBE_CARD = re.compile(r"\d(?:[ -]?\d){12,18}")
# `[A-Z]{2}\d{2}...`, found from its first digit: digits are rarer than capital letters.
_MAYBE_IBAN = re.compile(r"\d(?<=[A-Z]{2}\d)\d(?: ?[A-Z0-9]){11,30}")
# A piece each `_PHONE` alternative cannot match without (`+1`, `(55`, `555-123-4567`, `030 123`),
# written to start with one character class ([+(\d]) that the regex engine scans for quickly.
_MAYBE_PHONE = re.compile(r"[+(\d](?:(?<=\+)\d|(?<=\()\d\d|(?<=\d)\d\d[.-]\d{3}[.-]\d{4}|(?<=0)\d{2,4}[ /-]\d{3})")
# `_ASSIGNED_SECRET` in lower case, without what may precede the name's last word: what the
# lowered text must hold for it to match (unless it holds a case twin, see `CASE_TWINS`): one of
# these words, then `_AFTER_NAME` (see `_may_assign_secret`).
_SECRET_NAME_ENDS = ("key", "secret", "token", "password", "passwd", "pwd")
_AFTER_NAME = re.compile(r"[\"']?\s*[:=]")


def find_pii(text: str) -> list[tuple[str, str]]:
    """(type, the text found) for each piece of PII the rules of `redact` find in `text`, in rule order."""
    found: list[tuple[str, str]] = []
    redact(text, found)
    return found


def redact(text: str, found: list[tuple[str, str]] | None = None) -> tuple[str, Counter[str]]:
    """`text` with PII replaced by `<TYPE>`; the replacements counted by type (`email`, `card`, ...).
    `found` (if given) receives (type, the replaced text) for each replacement."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], kind: str, text: str, valid=None, group: int = 0) -> str:
        def replace(match: re.Match[str]) -> str:
            if valid is not None and not valid(match.group(group)):
                return match.group(0)
            counts[kind] += 1
            if found is not None:
                found.append((kind, match.group(group)))
            if group:
                return match.group(0)[: match.start(group) - match.start(0)] + f"<{kind.upper()}>"
            return f"<{kind.upper()}>"

        return pattern.sub(replace, text)

    for pattern, literals in _SECRETS:
        if any(literal in text for literal in literals):
            text = sub(pattern, "secret", text)
    lowered = text.lower()
    if _may_assign_secret(lowered) or (
        any(word in lowered for word in _SECRET_WORDS) and not text.isascii() and CASE_TWINS.search(text)
    ):
        text = sub(_ASSIGNED_SECRET, "secret", text, _looks_secret, group=2)
    del lowered
    if "@" in text:
        text = sub(_EMAIL, "email", text)
    if _MAYBE_IBAN.search(text):
        text = sub(_IBAN, "iban", text, _iban_ok)
    if _MAYBE_CARD.search(text):
        text = sub(_CARD, "card", text, _luhn_ok)
    if _MAYBE_IPV4.search(text):
        text = sub(_IPV4, "ip", text)
    if _MAYBE_IPV6.search(text):
        text = sub(_IPV6, "ip", text, _ipv6_ok)
    if _MAYBE_PHONE.search(text):
        text = sub(_PHONE, "phone", text, _phone_ok)
    return text, counts


def _may_assign_secret(lowered: str) -> bool:
    """Whether `(?:key|secret|token|password|passwd|pwd)[\"']?\\s*[:=]` matches `lowered`: each
    place of each word (found by `str.find`, C speed) is checked for what must follow it, instead
    of a regex that starts with an alternation tried at every position (2-3x slower on prose)."""
    for word in _SECRET_NAME_ENDS:
        at = lowered.find(word)
        while at >= 0:
            if _AFTER_NAME.match(lowered, at + len(word)):
                return True
            at = lowered.find(word, at + 1)
    return False


class _Ipv6Candidates:
    """`search(text)` is falsy only if `_IPV6` has no match that `_ipv6_ok` accepts: the address
    has a `::` next to a hex digit (it has two groups and no `:::`) or eight full groups. `::`
    is common in reST and code, and str.find steps through it faster than a regex."""

    @staticmethod
    def search(text: str) -> bool:
        at = text.find("::")
        while at >= 0:
            if (at > 0 and text[at - 1] in _HEX) or text[at + 2 : at + 3] in _HEX:
                return True
            at = text.find("::", at + 1)
        return text.count(":") >= 7 and _FULL_IPV6.search(text) is not None


_MAYBE_IPV6 = _Ipv6Candidates()


def _looks_secret(value: str) -> bool:
    """A value, not a word: has a digit or mixed case or a symbol, and is not a placeholder."""
    if value.startswith("<") or value.lower() in {"required", "optional", "none", "null", "changeme"}:
        return False
    return any(c.isdigit() for c in value) or (value.lower() != value and value.upper() != value)


def _luhn_ok(candidate: str) -> bool:
    """Luhn passes and the first digit is one card networks issue (2-6): a random long number
    (a hex address's digits, a timestamp, a big prime in an example) passes Luhn one time in ten."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1 or not 2 <= digits[0] <= 6:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def _ipv6_ok(candidate: str) -> bool:
    """A full or `::`-compressed address with at least two groups: a bare `::` (reST's literal
    block marker, a slice `[::2]`) or `::1` names no one."""
    if candidate.count(":") < 2 or "::" not in candidate and candidate.count(":") != 7:
        return False
    if sum(1 for group in candidate.split(":") if group) < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _phone_ok(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 7 <= digits <= 15 and not _DATE.fullmatch(candidate.strip())
