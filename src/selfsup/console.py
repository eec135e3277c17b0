"""One rich console for everything selfsup prints (progress bars, stage lines, warnings).

Messages are rich markup, and rich reads any `[word]` as a style: a recipe section such as
`[train]` in an error, a path or a user's text would vanish from the line. So whatever is not
meant as markup goes through `esc` (paths, recipe keys, exception messages, user text).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, highlight=False, soft_wrap=True)  # long paths stay on one line: logs are grepped


def say(message: str) -> None:
    """Print rich markup; interpolate anything else through `esc`."""
    console.print(message)


def esc(value: Any) -> str:
    """`value` as text that rich prints as it is (brackets kept)."""
    return escape(str(value))
