"""One rich console for everything selfsup prints (progress bars, stage lines, warnings)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)  # long paths stay on one line: logs are grepped


def say(message: str) -> None:
    console.print(message)
