"""Fixtures for the report tests: a finished work directory, and a one-call page builder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from report_fixtures import write_full_workdir

from selfsup.report import build_report


@pytest.fixture
def full_workdir(tmp_path: Path) -> Path:
    return write_full_workdir(tmp_path / "work")


@pytest.fixture
def build() -> Callable[[Path], str]:
    """Build the report of a work directory and return the page's text."""

    def _build(workdir: Path) -> str:
        return build_report(workdir).read_text(encoding="utf-8")

    return _build
