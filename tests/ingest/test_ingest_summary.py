"""The end-of-ingest summary and the report's corpus section show the same figures."""

from selfsup.config import CorpusConfig
from selfsup.ingest import ingest_sources
from selfsup.ingest.dry_run import plan_sources
from selfsup.ingest.summary import outcome_rows
from selfsup.report.inputs import read_inputs
from selfsup.report.sections import corpus_section
from tests.ingest.make_files import mixed_folder


def test_summary_and_report_agree(tmp_path):
    """Files seen, ingested, dropped by reason, exact and near duplicates, PII by type, languages,
    files/bytes/documents by format and time: in the printed summary and in the report section."""
    docs = mixed_folder(tmp_path)
    (docs / "contacts.txt").write_text("Write to ops@example.com or call +1 415 555 0100 about host 10.1.2.3.", encoding="utf-8")
    manifest = ingest_sources([docs], tmp_path / "work" / "corpus", CorpusConfig(workers=0))
    summary = dict(outcome_rows(manifest))
    assert summary["files seen"] == "19"
    assert summary["dropped"] == "1 unsupported_type"
    assert summary["duplicates"] == "1 exact, 1 near"
    assert summary["PII replaced"] == "1 email, 1 ip, 1 phone"
    assert manifest["formats"]["pdf"] == {"files": 1, "bytes": (docs / "report.pdf").stat().st_size, "documents": 1}

    section = corpus_section(read_inputs(tmp_path / "work"))
    facts = dict(section["facts"])
    assert facts["files seen"] == "19"
    assert facts["duplicates"] == "1 exact, 1 near"
    assert all(kind in facts["PII replaced"] for kind in ("email (1)", "ip (1)", "phone (1)"))
    assert facts["languages"].startswith("en (")
    assert "pdf: 1 files" in facts["by format"] and "jsonl: 1 files" in facts["by format"]
    assert "ingest time" in facts and "extraction" in facts
    assert {r["reason"]: r["files"] for r in section["reason_rows"]}["unsupported_type"] == "1"
    assert {r["status"]: r["files"] for r in section["status_rows"]}["ingested"] == str(manifest["audit"]["ingested"])


def test_dry_run_counts_without_reading_or_writing(tmp_path):
    """The dry run puts every file under its format or its skip reason, and creates nothing."""
    docs = mixed_folder(tmp_path)
    (docs / "huge.txt").write_bytes(b"x" * 9000)
    (docs / "link.txt").symlink_to(docs / "huge.txt")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    plan = plan_sources([docs], CorpusConfig(max_file_bytes=8000))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert plan.as_dict() == {
        "read": {"text": {"files": 14, "bytes": sum((docs / n).stat().st_size for n in plan_text_files(docs))},
                 "html": {"files": 1, "bytes": (docs / "page.html").stat().st_size},
                 "jsonl": {"files": 1, "bytes": (docs / "records.jsonl").stat().st_size},
                 "pdf": {"files": 1, "bytes": (docs / "report.pdf").stat().st_size}},
        "skip": {"too_large": {"files": 1, "bytes": 9000}, "symlink": {"files": 1, "bytes": 0},
                 "unsupported_type": {"files": 1, "bytes": 8}},
    }  # fmt: skip
    assert plan.files == 20


def plan_text_files(docs):
    return [p.relative_to(docs) for p in docs.rglob("*") if p.suffix in (".txt", ".md", ".rst") and p.name not in ("huge.txt", "link.txt")]
