"""MinHash word split: prose whose only non-ASCII characters are punctuation takes the bytes path, same words."""

import random
import re

from selfsup.dedup.minhash import minhash_signature, text_words


def test_blanked_punctuation_path_gives_the_regex_words():
    """Curly quotes, dashes, no-break spaces (not word characters) are cut like spaces; letters,
    digits and marks outside ASCII still go the regex way. Words equal `\\w+` on the lowered text."""
    texts = ["“Quoted” — it’s the pump’s valve…", "A\u00a0B\u2003C\u2028D", "x’y’z", "’’’", "SEAL–VALVE—PUMP",
             "lone \ud800 surrogate’s", "Straße “ß”", "٣٤ “digits”"]  # fmt: skip
    rng = random.Random(5)
    alphabet = "abcXYZ019_ .,\n’“”—…\u00a0\u2003éßİ٣\u0301😀"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(2000)]
    for text in texts:
        assert text_words(text) == [w.encode("utf-8", "surrogatepass") for w in re.findall(r"\w+", text.lower())], repr(text)


def test_signature_of_quoted_prose_is_that_of_its_ascii_twin():
    """Blanking punctuation cannot move a word boundary: the signature equals that of the same
    text with the curly punctuation replaced by spaces by hand."""
    text = "The “pump” — its valve’s seal — is checked weekly by the maintenance team on site."
    ascii_twin = text.replace("“", " ").replace("”", " ").replace("—", " ").replace("’", " ")
    assert (minhash_signature(text) == minhash_signature(ascii_twin)).all()
