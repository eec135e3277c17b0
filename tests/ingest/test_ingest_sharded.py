"""`--shard i/N` + `--merge`: N extraction shards merged equal a single-machine run."""

import os
import subprocess
import sys

import pytest

from selfsup.config import CorpusConfig
from selfsup.errors import UsageError
from selfsup.ingest import extract_shard, ingest_sources, merge_shards
from selfsup.ingest.discover import walk_sources
from selfsup.ingest.extract_shard import in_shard, parse_shard
from selfsup.manifest import verify_manifest
from tests.ingest.make_files import corpus_snapshot, mixed_folder

CFG = CorpusConfig(workers=0, shard_documents=4, validation_fraction=0.2)


def test_three_shards_and_merge_equal_a_single_run(tmp_path):
    """Shards 0..2 of 3 take disjoint slices covering every file; their merge has the same shards,
    audit, counts and fingerprint as one single-machine run (global exact and near dedup included)."""
    docs = mixed_folder(tmp_path)
    infos = [extract_shard([docs], tmp_path / "sharded", CFG, i, 3) for i in range(3)]
    assert sum(info["files"] for info in infos) == infos[0]["walked"] == 18
    assert all(0 < info["files"] < 18 for info in infos)
    merged = merge_shards(tmp_path / "sharded", CFG)
    single = ingest_sources([docs], tmp_path / "single", CFG)
    assert merged["extraction_shards"] == 3 and merged["fingerprint"] == single["fingerprint"]
    assert (merged["duplicates"], merged["near_duplicates"]) == (1, 1)
    assert corpus_snapshot(tmp_path / "sharded") == corpus_snapshot(tmp_path / "single")
    assert verify_manifest(tmp_path / "sharded")[0]


def test_merge_refuses_missing_or_inconsistent_shards(tmp_path):
    """A missing shard, shards of a changed folder, or other extraction settings: a UsageError
    saying what to rerun, and no corpus."""
    docs = mixed_folder(tmp_path)
    out = tmp_path / "corpus"
    with pytest.raises(UsageError, match="nothing to merge"):
        merge_shards(out, CFG)
    extract_shard([docs], out, CFG, 0, 3)
    extract_shard([docs], out, CFG, 2, 3)
    with pytest.raises(UsageError, match="missing 1/3"):
        merge_shards(out, CFG)
    (docs / "late.txt").write_text("A file added while the shards ran, about valves.", encoding="utf-8")
    extract_shard([docs], out, CFG, 1, 3)
    with pytest.raises(UsageError, match="different source folders"):
        merge_shards(out, CFG)
    for i in (0, 2):
        extract_shard([docs], out, CFG, i, 3)
    with pytest.raises(UsageError, match="other \\[corpus\\] settings"):
        merge_shards(out, CorpusConfig(workers=0, pii=False), count=3)
    assert not (out / "manifest.json").exists()
    assert merge_shards(out, CFG)["files_seen"] == 19


def test_shard_choice_is_stable_when_files_are_added(tmp_path):
    """A file's shard depends on its own path only: adding files never moves another file."""
    docs = mixed_folder(tmp_path)
    before = {e.rel: [i for i in range(8) if in_shard(e, i, 8)] for e in walk_sources([docs])}
    assert all(len(shards) == 1 for shards in before.values())
    mixed_folder(tmp_path, variant=1)
    after = {e.rel: [i for i in range(8) if in_shard(e, i, 8)] for e in walk_sources([docs])}
    assert all(after[rel] == shards for rel, shards in before.items() if rel in after)
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/8", "3", "a/b", "0/0"):
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)


def selfsup(*args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "selfsup", *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_cli_dry_run_shards_merge_and_summary(tmp_path):
    """The command line: --dry-run writes nothing and names what it would read and skip;
    --shard i/N then --merge build the corpus and print the summary table; bad flags exit 2."""
    docs = mixed_folder(tmp_path)
    out = tmp_path / "corpus"
    dry = selfsup("ingest", docs, "--out", out, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not out.exists()
    text = " ".join(dry.stderr.split())
    assert "18 files, nothing written" in text and "read text 14" in text and "skip unsupported_type 1" in text
    for i in range(2):
        shard = selfsup("ingest", docs, "--out", out, "--shard", f"{i}/2")
        assert shard.returncode == 0, shard.stderr
    merged = selfsup("ingest", "--merge", "--out", out)
    assert merged.returncode == 0, merged.stderr
    text = " ".join(merged.stderr.split())
    for needle in ("files seen 18", "dropped 1 unsupported_type", "duplicates 1 exact, 1 near", "17 files extracted, 0 unchanged (reused), 2 shard(s)"):
        assert needle in text, text
    bad = selfsup("ingest", docs, "--merge", "--out", out)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--merge" in bad.stderr
