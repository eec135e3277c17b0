"""The demo's sample corpus: real Python documentation, built from the interpreter, never imported."""

import sys

import pytest

from selfsup.sample_corpus import MARKER, build_sample_corpus, module_markdown


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    assert "antigravity" not in sys.modules  # so the check below means something
    return build_sample_corpus(tmp_path_factory.mktemp("sample") / "corpus")


def test_builds_both_parts_with_real_text(sample):
    """reference/ has the pydoc topics as .txt; stdlib/ has module docstrings as Markdown."""
    reference = sorted(sample.glob("reference/*.txt"))
    stdlib = sorted(sample.glob("stdlib/*.md"))
    assert len(reference) >= 50 and len(stdlib) >= 300
    json_md = (sample / "stdlib" / "json.md").read_text(encoding="utf-8")
    assert json_md.startswith("# json\n\nJSON (JavaScript Object Notation)")
    assert "\n## dumps\n" in json_md
    assert "\n## JSONDecoder.decode\n" in (sample / "stdlib" / "json.decoder.md").read_text(encoding="utf-8")
    assert not any("/test" in p.as_posix() or "idlelib" in p.name for p in stdlib)
    total = sum(p.stat().st_size for p in reference + stdlib)
    assert total > 1_000_000


def test_no_module_was_imported(sample):
    """Docstrings are read with ast: modules with import side effects were not run."""
    assert (sample / "stdlib" / "antigravity.md").exists()  # its docstrings were read...
    assert "antigravity" not in sys.modules and "this" not in sys.modules  # ...without running it


def test_idempotent(sample):
    """A folder with the marker is complete: building again rewrites nothing."""
    before = {p: p.stat().st_mtime_ns for p in sample.rglob("*")}
    assert (sample / MARKER).is_file()
    assert build_sample_corpus(sample) == sample
    assert {p: p.stat().st_mtime_ns for p in sample.rglob("*")} == before


def test_half_built_folder_is_redone(tmp_path, monkeypatch):
    """Without the marker, leftovers of an interrupted build are removed and the build runs again."""
    from selfsup import sample_corpus

    monkeypatch.setattr(sample_corpus, "stdlib_modules", lambda: {})  # keep this test fast
    (tmp_path / "stdlib").mkdir()
    (tmp_path / "stdlib" / "stale.md").write_text("old")
    build_sample_corpus(tmp_path)
    assert not (tmp_path / "stdlib" / "stale.md").exists()
    assert (tmp_path / MARKER).is_file() and any((tmp_path / "reference").iterdir())


def test_module_markdown_sections():
    """Public documented names get sections; private and undocumented ones do not."""
    import ast

    tree = ast.parse('"""Mod doc."""\ndef f():\n    """F doc."""\ndef _g():\n    """hidden"""\nclass C:\n    """C doc."""\n    def m(self):\n        """M doc."""\n    def n(self):\n        pass\n')
    assert module_markdown("mod", tree) == "# mod\n\nMod doc.\n\n## f\n\nF doc.\n\n## C\n\nC doc.\n\n## C.m\n\nM doc.\n"
    assert module_markdown("empty", ast.parse("x = 1")) == ""
