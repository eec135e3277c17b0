"""Mojibake repair's fast badness check: the same verdict as ftfy's, found in a fraction of the time."""

import random

import ftfy
from ftfy.badness import BADNESS_RE, MOJIBAKE_CATEGORIES, is_bad

from selfsup.clean import mojibake


def _varied_texts() -> list[str]:
    """Clean prose, real mojibake, and random mixtures of the characters ftfy's regex looks for,
    ASCII letters, spaces and newlines (so that matches start and end at every kind of place)."""
    from pydoc_data.topics import topics

    texts = [topics[name][:3000] for name in sorted(topics)[::4]]
    texts += ["Ã ", "Ã© at the start", "x Ã ", "The â€œquotedâ€\x9d word", "cafÃ©", "Ã\xa0", "ГўВЂВ\x9dA",
              "naïve résumé — “typographic”", "日本語のテキスト。", "Straße\x85 und \x93Zitat\x94", ""]  # fmt: skip
    alphabet = "".join(sorted(set("".join(MOJIBAKE_CATEGORIES.values()) + "ÂÃÎÐØÙà√≈‚вЂВГРСβ€ΒΓΞΟā×²³°œŒ")))
    alphabet = alphabet.replace("-", "")  # ranges such as \x80-\x9f are written with a dash
    alphabet += "\x80\x85\x9f" + "abcXYZ .,!?\n" * 8
    rng = random.Random(7)
    for _ in range(3000):
        core = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8)))
        texts.append("plain ascii words " * rng.randrange(0, 3) + core + " more ascii" * rng.randrange(0, 3))
    return texts


def test_windowed_badness_search_equals_ftfy_is_bad():
    """Searching only near non-ASCII runs gives ftfy's `is_bad` verdict on every text, bad or not
    (it fails if ftfy's regex ever gets an all-ASCII alternative or a longer match)."""
    assert mojibake.BADNESS_REACH is not None  # the installed ftfy's regex has the shape the shortcut needs
    texts = _varied_texts()
    verdicts = [is_bad(t) for t in texts]
    assert 100 < sum(verdicts) < len(texts) - 100  # both kinds are exercised
    for text, verdict in zip(texts, verdicts):
        assert mojibake.is_bad_near_non_ascii(text) == verdict, repr(text)


def test_fix_mojibake_returns_what_ftfy_returns_on_varied_text():
    """`fix_mojibake` is ftfy.fix_text with our settings, shortcut or not."""
    for text in _varied_texts()[::7]:
        assert mojibake.fix_mojibake(text) == ftfy.fix_text(text, mojibake._CONFIG), repr(text)


def test_badness_reach_is_the_regex_longest_match():
    """The reach is read from the regex itself: a match of its longest alternative fits the window."""
    longest = "ГўВЂВ\x9dA"  # the 7-character alternative
    assert BADNESS_RE.fullmatch(longest) and mojibake.BADNESS_REACH == len(longest) - 1
