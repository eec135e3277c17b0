"""The cleaning rules' fast paths give exactly what the plain rules gave before them.

Each `_before` function is the rule as it was before its shortcut (a verbatim copy); the tests
run old and new on real prose and on random texts stitched from the fragments the shortcuts
reason about (PII of every type, boilerplate phrases, the case twins İ ı ſ K, Unicode digits
and spaces, every kind of line break), and require identical results.
"""

import random
import re
import sys
import unicodedata
from collections import Counter

import ftfy

from selfsup.clean import mojibake
from selfsup.clean import normalise as normalise_module
from selfsup.clean import pii
from selfsup.clean.filters import _BOILERPLATE, CASE_TWINS, boilerplate, symbols
from selfsup.clean.normalise import normalise_text
from selfsup.config import CorpusConfig

FRAGMENTS = [
    "mail ann@example.com", "AKIAIOSFODNN7EXAMPLE", "host 10.0.0.1", "fe80::1:2", "a[::2]", "Example::", "::",
    "1:2:3:4:5:6:7:8", "2001:db8:0:0:0:0:2:1", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005",
    "token = abcDEF123456", "API_KEY: 'Zx9yW8vU7t'", "password=hunter2hunter2", "ſecret = Abc12345xyz", "toKen=Abc123456",
    "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "+41 44 668 18 00", "(555) 123-4567", "555-123-4567",
    "030 1234 5678", "2024-01-31", "31.01.2024", "٣٤٥٦٧٨٩٠١٢٣٤", "+٤١ ٤٤ ٦٦٨", "version 3.11.2", "0x7fffe1",
    "All Rights Reserved", "© ACME", "(C) 2024", "Copyright 2024", "cookie", "Privacy Policy", "Terms of Use",
    "click HERE", "Subscribe", "SIGN IN", "Log in", "LOGIN", "skip to main content", "Back to top", "share this",
    "Follow us", "Powered by", "Lorem Ipsum", "İ", "ı", "ſ", "K", "ſubscribe", "ſhare thiſ", "cooKie", "Sİgn in",
    "naïve café", "“quoted” — ’", "日本語", "Ελληνικά", "\u00a0", "\u2003", "\t", " ", "\n", "\r\n", "\r", "\x85",
    "\u2028", "\u2029", "\n\n\n", "\ufeff", "\x00", "\x0b", "\x1c", "\ud800", "_", "-", ".", ":", "=", "@", "+", "(",
]  # fmt: skip


def varied_texts(count: int = 1500) -> list[str]:
    from pydoc_data.topics import topics

    texts = [topics[name][:4000] for name in sorted(topics)[::3]]
    rng = random.Random(11)
    words = "the pump valve seal 42 of and 7 in x".split()
    for _ in range(count):
        parts = [rng.choice(FRAGMENTS) if rng.random() < 0.5 else rng.choice(words) for _ in range(rng.randrange(1, 30))]
        texts.append("".join(p + rng.choice(["", " ", " ", "\n", "  \n", ", "]) for p in parts))
    return texts


def _normalise_before(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = normalise_module._SURROGATE.sub("\ufffd", text)
    text = normalise_module._LINE_BREAKS.sub("\n", text)
    text = normalise_module._CONTROL.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = normalise_module._TRAILING_SPACE.sub("", text)
    text = normalise_module._BLANK_RUN.sub("\n\n", text)
    return text.strip()


def _symbols_before(text: str, cfg: CorpusConfig) -> bool:
    sample = re.sub(r"\s+", "", text[:100_000])
    if len(sample) < 20:
        return False
    letters = len(re.sub(r"[\W\d_]+", "", sample))
    return letters < cfg.min_letter_fraction * len(sample)


def _boilerplate_before(text: str, cfg: CorpusConfig) -> bool:
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 3:
        return False
    hits = sum(1 for line in lines if len(line) < 200 and _BOILERPLATE.search(line))
    return hits > cfg.max_boilerplate_line_fraction * len(lines)


def _redact_before(text: str) -> tuple[str, Counter]:
    counts: Counter[str] = Counter()

    def sub(pattern, kind, text, valid=None, group=0):
        def replace(match):
            if valid is not None and not valid(match.group(group)):
                return match.group(0)
            counts[kind] += 1
            if group:
                return match.group(0)[: match.start(group) - match.start(0)] + f"<{kind.upper()}>"
            return f"<{kind.upper()}>"

        return pattern.sub(replace, text)

    for pattern, literals in pii._SECRETS:
        if any(literal in text for literal in literals):
            text = sub(pattern, "secret", text)
    lowered = text.lower()
    if any(word in lowered for word in pii._SECRET_WORDS):
        text = sub(pii._ASSIGNED_SECRET, "secret", text, pii._looks_secret, group=2)
    if "@" in text:
        text = sub(pii._EMAIL, "email", text)
    if re.search(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}", text):
        text = sub(pii._IBAN, "iban", text, pii._iban_ok)
    if re.search(r"\d(?:[ -]?\d){12,18}", text):
        text = sub(pii._CARD, "card", text, pii._luhn_ok)
    if re.search(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", text):
        text = sub(pii._IPV4, "ip", text)
    if re.search(r"::|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){7}", text):
        text = sub(pii._IPV6, "ip", text, pii._ipv6_ok)
    text = sub(pii._PHONE, "phone", text, pii._phone_ok)
    return text, counts


def test_normalise_fast_path_equals_the_plain_rules():
    """Skipping a substitution only when it cannot match leaves every normalised text as it was."""
    for text in varied_texts():
        assert normalise_text(text) == _normalise_before(text), repr(text)


def test_symbols_and_boilerplate_fast_paths_equal_the_plain_rules():
    """Bytewise letter counts and the literal pre-check give the rules' old verdicts, case twins included."""
    texts = [normalise_text(t) for t in varied_texts()]
    for cfg in (CorpusConfig(), CorpusConfig(min_letter_fraction=0.7, max_boilerplate_line_fraction=0.1)):
        verdicts = [(symbols(t, cfg), boilerplate(t, cfg)) for t in texts]
        assert verdicts == [(_symbols_before(t, cfg), _boilerplate_before(t, cfg)) for t in texts]
        assert 0 < sum(b for _, b in verdicts) < len(texts) and 0 < sum(s for s, _ in verdicts) < len(texts)


def test_redact_fast_path_equals_the_plain_rules():
    """The tighter pre-checks (phone, IBAN, IPv6, assigned secrets) replace exactly what was replaced before."""
    texts = [normalise_text(t) for t in varied_texts()]
    results = [pii.redact(t) for t in texts]
    assert results == [_redact_before(t) for t in texts]
    found = Counter()
    for _, counts in results:
        found.update(counts)
    assert set(found) == {"secret", "email", "iban", "card", "ip", "phone"}, found


def test_case_twins_are_all_the_non_ascii_letters_ignorecase_matches_to_ascii():
    """The boilerplate and secret pre-checks lower-case text; only these four characters escape that."""
    letter = re.compile("[a-z]", re.IGNORECASE)
    twins = [chr(c) for c in range(0x80, sys.maxunicode + 1) if letter.fullmatch(chr(c))]
    assert twins == ["\u0130", "\u0131", "\u017f", "\u212a"]
    assert all(CASE_TWINS.fullmatch(t) for t in twins)


_MAYBE_ASSIGNED_SECRET_BEFORE = re.compile(r"(?:key|secret|token|password|passwd|pwd)[\"']?\s*[:=]")


def test_assigned_secret_precheck_equals_the_regex_it_replaced():
    """The find-and-match pre-check says yes exactly where the old regex found a name assigned a
    value (quotes, spaces and tabs between, words inside other words, at the very end)."""
    texts = [normalise_text(t).lower() for t in varied_texts()]
    texts += ["key", "key=", "monkey :x", 'token"=', "pwd\t\t= x", "passwd'\n:", "keyword = 1", "secret", "pass=", "tokens = 2"]
    verdicts = [pii._may_assign_secret(t) for t in texts]
    assert verdicts == [_MAYBE_ASSIGNED_SECRET_BEFORE.search(t) is not None for t in texts]
    assert 0 < sum(verdicts) < len(texts)


def _fix_mojibake_before(text: str) -> str:
    from ftfy.badness import BADNESS_RE

    if not text.isascii():
        for run in re.finditer("[^\x00-\x7f]+", text):
            if BADNESS_RE.search(text, max(0, run.start() - mojibake.BADNESS_REACH), run.end() + mojibake.BADNESS_REACH):
                break
        else:
            if not mojibake._C1_OR_SURROGATE.search(text):
                return text
        return ftfy.fix_text(text, mojibake._CONFIG)
    return text


def test_mojibake_code_point_pass_equals_the_regex_passes():
    """One numpy pass over the code points (C1 controls, surrogates, merged windows around
    non-ASCII characters) repairs exactly the texts the per-run regex searches repaired."""
    texts = varied_texts(800) + ["cafÃ©", "The â€œquotedâ€\x9d word", "x\x85y", "\ud800", "Ã", "naïve Ã© " * 3, "ÃƒÂ©"]
    rng = random.Random(5)
    alphabet = "ÃÂâ€œ\x9dœ©°é ab\n\x80\x9f\ud800"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))) for _ in range(1500)]
    fixed = [mojibake.fix_mojibake(t) for t in texts]
    assert fixed == [_fix_mojibake_before(t) for t in texts]
    assert sum(f != t for f, t in zip(fixed, texts)) > 100  # repairs happened, not only the shortcut
    for text in texts:
        assert mojibake._has_c1_or_surrogate(mojibake.code_points(text)) == bool(mojibake._C1_OR_SURROGATE.search(text))


def test_language_counts_come_in_py3langid_order():
    """The numpy feature counts are py3langid's {feature: count} items, in its first-seen order
    (the order decides the float sum of the score, so it must not change)."""
    from py3langid.langid import visit_counts

    from selfsup.clean.language import SAMPLE, _identifier

    identifier = _identifier()
    rng = random.Random(9)
    texts = [t[:SAMPLE] for t in varied_texts(300)]
    texts += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))).decode("latin-1") for _ in range(100)]
    for text in texts:
        data = identifier._encode(text)
        expected = visit_counts(identifier.tk_nextmove, identifier._rowbase, identifier.tk_output, data)
        found = identifier._window_feature.counts(data)
        if expected is None:
            assert found is None
        else:
            assert list(zip(found[0].tolist(), found[1].tolist())) == list(expected.items())
