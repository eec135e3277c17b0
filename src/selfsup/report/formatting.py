"""How numbers and the recipe read on the page: few digits, thousands separated, units named.

Every formatter accepts anything (None, a string, NaN) and returns a string, because the inputs
come from files other stages wrote and a report must not fail on one odd value. "—" means "no value".
"""

from __future__ import annotations

import json
import math
from typing import Any

DASH = "—"
MINUS = "\u2212"  # a real minus sign: "−38%" reads better than "-38%"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt_int(value: Any) -> str:
    """1234567 → "1,234,567"."""
    if not is_number(value):
        return DASH if value is None else str(value)
    if not math.isfinite(value):
        return _non_finite(value)
    return f"{round(value):,}".replace("-", MINUS)


def fmt_si(value: Any) -> str:
    """Three significant digits with a k / M / B suffix: 1_234_567 → "1.23 M" (for prose and cards)."""
    if not is_number(value):
        return DASH if value is None else str(value)
    if not math.isfinite(value):
        return _non_finite(value)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale * 0.9995:  # 999_960 reads "1.00 M", not "1000 k"
            return f"{_three_significant(value / scale)} {suffix}"
    return fmt_int(value) if float(value).is_integer() else f"{value:.3g}"


def fmt_float(value: Any, digits: int = 3) -> str:
    """Fixed decimals, for losses and bits per byte: 1.84213 → "1.842"."""
    if not is_number(value):
        return DASH if value is None else str(value)
    if not math.isfinite(value):
        return _non_finite(value)
    return f"{value:,.{digits}f}".replace("-", MINUS)


def fmt_sig(value: Any, digits: int = 4) -> str:
    """Significant digits, for perplexity and learning rates: 12.3456 → "12.35", 0.0003 → "0.0003"."""
    if not is_number(value):
        return DASH if value is None else str(value)
    if not math.isfinite(value):
        return _non_finite(value)
    if abs(value) >= 10 ** digits:
        return fmt_int(value)
    return f"{value:.{digits}g}".replace("-", MINUS)


def fmt_pct(value: Any) -> str:
    """A share in [0, 1] as a percentage: 0.4213 → "42.1%"."""
    if not is_number(value):
        return DASH if value is None else str(value)
    if not math.isfinite(value):
        return _non_finite(value)
    return f"{value * 100:.1f}%"


def fmt_change(ratio: float) -> str:
    """A relative change: −0.381 → "−38%", 0.052 → "+5.2%" (one decimal below 10%)."""
    pct = ratio * 100
    text = f"{abs(pct):.0f}" if abs(pct) >= 9.95 else f"{abs(pct):.1f}"
    if float(text) == 0:
        return "±0%"
    return f"{MINUS if pct < 0 else '+'}{text}%"


def fmt_bytes(value: Any) -> str:
    """Binary units: 5_662_310 → "5.4 MiB"."""
    if not is_number(value):
        return DASH if value is None else str(value)
    if not math.isfinite(value):
        return _non_finite(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return DASH  # unreachable


def fmt_duration(seconds: Any) -> str:
    """42.3 → "42 s", 192 → "3 min 12 s", 7500 → "2 h 05 min"."""
    if not is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        return DASH if seconds is None else str(seconds)
    s = round(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


# How a metric named by a key is shown; unknown numeric keys fall back on `fmt_value`'s defaults.
_BY_KEY = {
    "loss": lambda v: fmt_float(v, 3),
    "val_loss": lambda v: fmt_float(v, 3),
    "bits_per_byte": lambda v: fmt_float(v, 3),
    "perplexity": lambda v: fmt_sig(v, 4),
    "masked_accuracy": fmt_pct,
    "accuracy": fmt_pct,
    "mfu": fmt_pct,
    "lr": lambda v: fmt_sig(v, 3),
    "tokens_per_s": fmt_int,
    "elapsed_s": fmt_duration,
    "bytes": fmt_bytes,
    "grad_norm": lambda v: fmt_sig(v, 3),
}


def fmt_value(key: str, value: Any) -> str:
    """A value as shown in a table cell, chosen by its key, then by its type."""
    if value is None:
        return DASH
    if key in _BY_KEY and is_number(value):
        return _BY_KEY[key](value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return fmt_int(value)
    if isinstance(value, float):
        return fmt_sig(value, 4)
    if isinstance(value, dict):
        return ", ".join(f"{k} ({fmt_value(k, v)})" for k, v in value.items()) or DASH
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(key, v) for v in value) or DASH
    return str(value)


def recipe_as_toml(recipe: dict[str, Any]) -> str:
    """The recipe as TOML a user can paste into a recipe file (unset values become comments)."""
    lines: list[str] = []
    scalars = {k: v for k, v in recipe.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in recipe.items() if isinstance(v, dict)}
    lines += _toml_pairs(scalars)
    for name, table in tables.items():
        lines += _toml_table(str(name), table)
    return "\n".join(lines).strip() + "\n"


def _toml_table(name: str, table: dict[str, Any]) -> list[str]:
    lines = ["", f"[{name}]"]
    lines += _toml_pairs({k: v for k, v in table.items() if not isinstance(v, dict)})
    for key, sub in table.items():
        if isinstance(sub, dict):
            lines += _toml_table(f"{name}.{_toml_key(str(key))}", sub)
    return lines


def _toml_pairs(pairs: dict[str, Any]) -> list[str]:
    out = []
    for key, value in pairs.items():
        if value is None:
            out.append(f"# {_toml_key(str(key))} = (not set)")
        else:
            out.append(f"{_toml_key(str(key))} = {_toml_value(value)}")
    return out


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _three_significant(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _non_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("∞" if value > 0 else f"{MINUS}∞")
