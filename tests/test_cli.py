"""The command line: every verb has --help; bad input is one line and exit code 2, no traceback."""

import subprocess
import sys

import pytest

VERBS = ["demo", "run", "ingest", "tokenizer", "pack", "pairs", "train", "eval", "audit", "report", "export"]


def selfsup(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "selfsup", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb):
    """`selfsup VERB --help` exits 0 and describes the verb."""
    out = selfsup(verb, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def _assert_one_line_error(out, *needles):
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    text = " ".join(out.stderr.split())
    for n in needles:
        assert n in text, text


def test_recipe_typo_names_the_key(tmp_path):
    """A misspelt key exits 2 naming the key and the likely intended one."""
    r = tmp_path / "r.toml"
    r.write_text('[corpus]\nsources = ["."]\n[train]\nmax_step = 3\n')
    _assert_one_line_error(selfsup("run", r, "--workdir", tmp_path / "w"), "max_step", "did you mean 'max_steps'")


def test_missing_source_and_empty_folder(tmp_path):
    """A source that does not exist, or a folder with nothing in it, exits 2 with what to do."""
    r = tmp_path / "r.toml"
    r.write_text('[corpus]\nsources = ["nope"]\n')
    _assert_one_line_error(selfsup("run", r, "--workdir", tmp_path / "w"), "nope")
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(selfsup("ingest", tmp_path / "empty", "--out", tmp_path / "c"), "empty")


def test_folder_without_usable_text(tmp_path):
    """Only unusable files: exit 2, and the audit still says what happened to each."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.bin").write_bytes(b"\x00\x01binary")
    (d / "b.txt").write_text("  ")
    _assert_one_line_error(selfsup("ingest", d, "--out", tmp_path / "c"), "audit")
    assert len((tmp_path / "c" / "audit.jsonl").read_text().splitlines()) == 2


def test_debug_shows_traceback(tmp_path):
    """--debug trades the one-line message for the full traceback."""
    out = selfsup("--debug", "ingest", tmp_path / "missing", "--out", tmp_path / "c")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_unknown_verb_is_usage_error():
    """A mistyped verb is a usage error (exit 2)."""
    assert selfsup("trian").returncode == 2


def test_export_refuses_a_k_quant_with_the_command_that_makes_one(tmp_path):
    """`selfsup export RUN --format gguf --quant q4_k_m` stops before any work (exit 2) and gives the
    llama-quantize command to run on the f16 file."""
    out = selfsup("export", tmp_path / "run", "--format", "gguf", "--quant", "q4_k_m")
    _assert_one_line_error(out, "--quant", "llama-quantize model/model-f16.gguf model/model-q4_k_m.gguf Q4_K_M")


def test_messages_that_name_a_recipe_section_keep_its_brackets(tmp_path):
    """The console reads `[word]` as markup: an error naming `[train] lr`, and the help naming
    `[model] base`, must print the brackets (they are what the user searches the recipe for)."""
    r = tmp_path / "r.toml"
    r.write_text('[corpus]\nsources = ["."]\n[train]\nlr = -1\n')
    _assert_one_line_error(selfsup("run", r, "--workdir", tmp_path / "w"), "[train]", "lr")
    help_text = " ".join(selfsup("eval", "--help").stdout.split())
    assert "[model] base" in help_text and "[eval] texts" in help_text
