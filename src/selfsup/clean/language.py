"""Language identification with py3langid (its model ships with the package: no download).

The language (ISO 639-1, e.g. `en`) is recorded for every prose document; with a non-empty
`[corpus] languages` allow-list, other languages are dropped as `filtered:language`. Judged on
the first 2,000 characters: enough for a stable guess, and bounded time on huge documents.
"""

from __future__ import annotations

from functools import cache

SAMPLE = 2000


@cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)  # numpy .npz, not a pickle


def detect_language(text: str) -> str:
    """The most likely language code of `text`."""
    language, _ = _identifier().classify(text[:SAMPLE])
    return str(language)
