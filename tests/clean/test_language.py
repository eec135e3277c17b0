"""Language identification's numpy window walk: py3langid's own answer, score for score."""

import random

from selfsup.clean.language import SAMPLE, _identifier, detect_language


def test_window_walk_gives_py3langid_classify_exactly():
    """Same (language, score) as the plain py3langid identifier on prose in many languages, on
    random Unicode and on random bytes (every DFA state reached by chance, not just by prose);
    it would fail if the automaton's state depended on more than its `depth` last bytes."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    from pydoc_data.topics import topics

    fast = _identifier()
    assert fast._window_feature is not None and fast._window_feature.depth == 6  # the fast path is the one tested
    plain = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)
    rng = random.Random(3)
    texts = [topics[name][:SAMPLE] for name in sorted(topics)[::2]]
    texts += ["Le café est très bon. À Noël, nous mangeons des crêpes.", "Das Ventil wird geschlossen, bevor das Gehäuse geöffnet wird.",
              "日本語のテキストです。", "Привет, как дела?", "Ελληνικά κείμενα", "مرحبا بالعالم", "", "a", "ab", "ABC DEF", "\x00\x01"]  # fmt: skip
    texts += ["".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 200))) for _ in range(200)]
    texts += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))).decode("latin-1") for _ in range(200)]
    for text in texts:
        assert fast.classify(text) == plain.classify(text), repr(text[:60])


def test_detect_language_names_the_language():
    assert detect_language("The pump must be stopped before the valve housing is opened for service.") == "en"
    assert detect_language("La pompe doit être arrêtée avant d'ouvrir le corps de la vanne.") == "fr"
