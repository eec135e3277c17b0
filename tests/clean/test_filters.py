"""Quality rules (exact reasons), language identification and mojibake repair."""

from selfsup.clean.filters import quality_reason
from selfsup.clean.language import detect_language
from selfsup.clean.mojibake import fix_mojibake
from selfsup.config import CorpusConfig

CFG = CorpusConfig()
PROSE = "Close the intake valve before opening the housing of the pump, then drain the fluid."


def test_prose_is_kept():
    assert quality_reason(PROSE, CFG) is None
    assert quality_reason("# Notes\n\n- valves\n- seals", CFG) is None


def test_symbol_noise_is_dropped_but_code_is_not():
    noise = "| 12.5 | 13.7 | 99.1 | -- | ## | 42 | 17 | 3.14 | 2.71 | 1.41 |"
    assert quality_reason(noise, CFG) == "filtered:symbols"
    assert quality_reason(noise, CFG, code=True) is None


def test_repeated_lines_are_dropped():
    text = "\n".join([PROSE, "Buy now!!!", "Buy now!!!", "Buy now!!!", "Buy now!!!", "Buy now!!!"])
    assert quality_reason(PROSE + "\n" + text.replace(PROSE, "") * 3, CFG) == "filtered:repetition"
    varied = "\n".join(f"Step {i}: tighten bolt {i} to the torque in the table." for i in range(10))
    assert quality_reason(varied, CFG) is None


def test_boilerplate_lines_are_dropped():
    page = "Home page\nPrivacy policy\nTerms of use\nCookie settings\nAll rights reserved 2024\nSome content here."
    assert quality_reason(page, CFG) == "filtered:boilerplate"


def test_long_line_threshold_is_configurable():
    assert quality_reason("word " * 300, CorpusConfig(max_line_chars=1000)) == "filtered:long_line"
    assert quality_reason("word\n" * 300, CorpusConfig(max_line_chars=1000)) is not None  # repetition, not long_line
    assert quality_reason("word " * 300, CFG) is None


def test_language_identification():
    assert detect_language(PROSE) == "en"
    assert detect_language("Le café est très bon. À Noël, nous mangeons des crêpes et du pâté.") == "fr"
    assert detect_language("Das Ventil wird geschlossen, bevor das Gehäuse der Pumpe geöffnet wird.") == "de"


def test_mojibake_is_repaired_and_good_text_untouched():
    assert fix_mojibake("The cafÃ© serves crÃ¨me brÃ»lÃ©e") == "The café serves crème brûlée"
    for good in ("naïve café", "“quoted” — ﬁne", "plain ascii", "Ελληνικά и русский"):
        assert fix_mojibake(good) == good


def test_mojibake_shortcut_returns_what_ftfy_returns():
    """The one-regex shortcut for text without mojibake gives exactly ftfy's output, on clean
    prose, broken prose (UTF-8 read as Latin-1 / cp1252), C1 controls and non-Latin scripts."""
    import ftfy
    from pydoc_data.topics import topics

    from selfsup.clean import mojibake

    texts = [topics[name][:2000] for name in sorted(topics)[:40]]
    texts += ["Ce café coûte 3 €, déjà payé.", "Ce cafÃ© coÃ»te 3 â‚¬, dÃ©jÃ  payÃ©.", "Straße\x85 und \x93Zitat\x94",
              "日本語のテキスト。", "Ελληνικά κείμενα", "The â€œquotedâ€\x9d word", "naïve résumé — “typographic”"]  # fmt: skip
    for text in texts:
        assert mojibake.fix_mojibake(text) == ftfy.fix_text(text, mojibake._CONFIG), text
    assert mojibake.fix_mojibake(texts[-6]) != texts[-6]  # the broken one is repaired
