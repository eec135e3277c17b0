"""Memory stays flat as the corpus grows: peak RSS of the ingest process and of its workers is bounded.

The folder size is SELFSUP_INGEST_MEMORY_MB (default 48 MB, so the suite stays fast on 2 cores;
the 1 GB figure is measured with SELFSUP_INGEST_MEMORY_MB=1024, see docs/ingest.md).
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

FOLDER_MB = int(os.environ.get("SELFSUP_INGEST_MEMORY_MB", "48"))
FILE_KB = 64
# The bound, whatever the folder size: imports and models (~250 MB), a window of files in flight,
# one Parquet row group of text on each side, and the dedup indexes (~3 KB per 64 KB document).
PROCESS_MB = 600
WORKER_MB = 500


def make_folder(folder: Path, megabytes: int) -> int:
    """Distinct ~64 KB documents of real prose, paragraphs drawn by a seeded generator (no near-duplicates)."""
    from pydoc_data.topics import topics

    paragraphs = [p.strip() for t in topics.values() for p in t.split("\n\n") if len(p.strip()) > 40]
    folder.mkdir(parents=True)
    files = megabytes * 1024 // FILE_KB
    for i in range(files):
        rng = random.Random(i)
        chosen, size = [f"Manual {i}."], 0
        while size < FILE_KB * 1024:
            chosen.append(rng.choice(paragraphs))
            size += len(chosen[-1]) + 2
        (folder / f"{i // 1000:03d}" / f"manual{i:06d}.txt").parent.mkdir(exist_ok=True)
        (folder / f"{i // 1000:03d}" / f"manual{i:06d}.txt").write_text("\n\n".join(chosen), encoding="utf-8")
    return files


@pytest.mark.slow
def test_peak_rss_is_bounded(tmp_path):
    """Ingesting a generated folder (48 MB by default, 1 GB measured) keeps the ingest process under
    600 MB and every worker under 500 MB of peak RSS, and accounts for every file."""
    files = make_folder(tmp_path / "docs", FOLDER_MB)
    code = (
        "import json, resource, sys, time; from pathlib import Path; from selfsup.config import CorpusConfig;"
        "from selfsup.ingest import ingest_sources; t = time.monotonic();"
        "m = ingest_sources([Path(sys.argv[1])], Path(sys.argv[2]), CorpusConfig());"
        # VmHWM, not ru_maxrss: after fork + exec, Linux's ru_maxrss starts at the parent's RSS (pytest's, 1 GB
        # late in the suite), VmHWM is this program's own peak.
        "hwm = [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')];"
        "print(json.dumps({'process': hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'worker': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 'seconds': time.monotonic() - t,"
        " 'files': m['files_seen'], 'documents': m['documents']}))"
    )
    done = subprocess.run([sys.executable, "-c", code, tmp_path / "docs", tmp_path / "corpus"], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    peak = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{FOLDER_MB} MB, {files} files: {peak}")
    assert peak["files"] == files and peak["documents"] >= files * 0.99
    assert peak["process"] < PROCESS_MB, peak
    assert peak["worker"] < WORKER_MB, peak
