"""Number formatting and the recipe dump: readable, signed correctly, and never failing on odd values."""

from __future__ import annotations

import math
import tomllib

import pytest

from selfsup.config import Recipe
from selfsup.report.formatting import (
    fmt_bytes,
    fmt_change,
    fmt_duration,
    fmt_float,
    fmt_int,
    fmt_si,
    fmt_sig,
    fmt_value,
    recipe_as_toml,
)


@pytest.mark.parametrize(
    "ratio, text",
    [(-0.38, "\u221238%"), (-0.0512, "\u22125.1%"), (0.05, "+5.0%"), (0.0, "±0%"), (-0.00001, "±0%"), (1.5, "+150%")],
)
def test_relative_change_has_a_real_sign(ratio: float, text: str) -> None:
    """Changes read "−38%" / "+5.0%" with a real minus sign; a change that rounds to zero has no sign."""
    assert fmt_change(ratio) == text


def test_numbers_read_well() -> None:
    """Thousands separated, SI suffixes with three significant digits, fixed decimals for losses."""
    assert fmt_int(1234567) == "1,234,567"
    assert fmt_si(1_234_567) == "1.23 M" and fmt_si(999_960) == "1.00 M" and fmt_si(135e6) == "135 M"
    assert fmt_si(512) == "512"
    assert fmt_float(1.84213) == "1.842"
    assert fmt_sig(0.0003, 3) == "0.0003" and fmt_sig(47.853) == "47.85" and fmt_sig(123456.7) == "123,457"
    assert fmt_bytes(530_000) == "517.6 KiB" and fmt_bytes(12) == "12 B"
    assert fmt_duration(20.4) == "20 s" and fmt_duration(192) == "3 min 12 s" and fmt_duration(7500) == "2 h 05 min"


@pytest.mark.parametrize("value", [None, "n/a", math.nan, math.inf, -math.inf, True, [1, 2], {"a": 1}])
def test_formatters_accept_anything(value) -> None:
    """Every formatter returns a string for any value a stage might have written, never raising."""
    for fmt in (fmt_int, fmt_si, fmt_float, fmt_sig, fmt_bytes, fmt_duration):
        assert isinstance(fmt(value), str)
    for key in ("loss", "perplexity", "masked_accuracy", "bytes", "elapsed_s", "whatever"):
        assert isinstance(fmt_value(key, value), str)


def test_recipe_dump_is_toml_that_reads_back() -> None:
    """The recipe shown on the page parses as TOML to the same settings (unset ones become comments)."""
    recipe = Recipe().model_dump(mode="json", by_alias=True)
    recipe["corpus"]["sources"] = ['/data/"quoted"\\dir', "ünïcode"]
    text = recipe_as_toml(recipe)
    assert "# from = (not set)" in text
    expected = {s: {k: v for k, v in body.items() if v is not None} for s, body in recipe.items()}
    assert tomllib.loads(text) == expected
