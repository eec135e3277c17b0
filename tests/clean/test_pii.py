"""PII rules: true positives become typed placeholders and are counted; look-alikes are left alone."""

import pytest

from selfsup.clean.pii import redact


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("mail jane.doe+x@mail.example.co.uk now", "mail <EMAIL> now", "email"),
        ("call +41 44 668 18 00 today", "call <PHONE> today", "phone"),
        ("call (555) 123-4567 today", "call <PHONE> today", "phone"),
        ("call 555-123-4567 today", "call <PHONE> today", "phone"),
        ("call 030 1234 5678 today", "call <PHONE> today", "phone"),
        ("host 192.168.1.20 down", "host <IP> down", "ip"),
        ("ends with 10.1.2.3.", "ends with <IP>.", "ip"),
        ("host 2001:db8::8a2e:370:7334 down", "host <IP> down", "ip"),
        ("card 4111 1111 1111 1111 ok", "card <CARD> ok", "card"),
        ("card 5500-0000-0000-0004 ok", "card <CARD> ok", "card"),
        ("amex 3782 822463 10005 ok", "amex <CARD> ok", "card"),
        ("plain 4111111111111111 ok", "plain <CARD> ok", "card"),
        ("pay GB82 WEST 1234 5698 7654 32 now", "pay <IBAN> now", "iban"),
        ("pay DE89370400440532013000 now", "pay <IBAN> now", "iban"),
        ("key AKIAIOSFODNN7EXAMPLE here", "key <SECRET> here", "secret"),
        ("tok ghp_abcdefghijklmnopqrstuvwxyz0123456789 x", "tok <SECRET> x", "secret"),
        ("password = hunter2XY9z", "password = <SECRET>", "secret"),
        ('api_key: "sk_live_4eC39HqLyjWDarjtT1"', 'api_key: "<SECRET>"', "secret"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----", "<SECRET>", "secret"),
    ],
)
def test_true_positives(text, expected, kind):
    redacted, counts = redact(text)
    assert redacted == expected and counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "order 1234567890123 shipped",  # 13 digits, not Luhn-valid
        "version 3.11.2 and 1.2.3",
        "on 2024-01-15 at 12:30:45",
        "IBAN GB00 WEST 1234 5698 7654 32 has a bad check",
        "a total of 1,234,567.89 dollars",
        "the password is required",
        "see section 4.2.1 of RFC 1918",
        "room 101 and 999 999",
        "An example ::\n\n    code",  # reST literal block marker
        "-rw-r--r-- root/root      3506 2013-03-15 20:43 ./etc/skel/.bashrc",  # size, date, time: Luhn passes by chance
        "card 4111 1111-1111 1111 mixes separators",
        "Location: 0x4111111111111111e1 and 5.4111111111111111e-017",  # hex, float
        "prime 1111111111111111 and 9111111111111111",  # no network issues cards starting 1 or 9
        "every other item: items[ ::2] or :: alone",
    ],
)
def test_false_positives_are_left_alone(text):
    assert redact(text) == (text, {})


def test_prefilters_only_skip_work(monkeypatch):
    """The fast pre-checks (literals, loose candidate patterns) never change what is replaced:
    with every check forced to pass, the same texts come out, on real prose and on PII."""
    import re

    from pydoc_data.topics import topics

    from selfsup.clean import pii

    texts = [topics[name][:3000] for name in sorted(topics)[:60]]
    texts += ["mail ann@example.com, key AKIAIOSFODNN7EXAMPLE, host 10.0.0.1 and fe80::1:2, card 4111 1111 1111 1111",
              "token = abcDEF123456 and GB82 WEST 1234 5698 7654 32; call +41 44 668 18 00"]  # fmt: skip
    fast = [pii.redact(t) for t in texts]
    always = re.compile("")
    for name in ("_MAYBE_IPV4", "_MAYBE_IPV6", "_MAYBE_CARD", "_MAYBE_IBAN"):
        monkeypatch.setattr(pii, name, always)
    monkeypatch.setattr(pii, "_SECRETS", [(pattern, ("",)) for pattern, _ in pii._SECRETS])
    monkeypatch.setattr(pii, "_SECRET_WORDS", ("",))
    slow = [pii.redact(t) for t in texts]
    assert fast == slow
    assert sum(sum(counts.values()) for _, counts in fast) >= 8
