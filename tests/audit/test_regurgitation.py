"""PII in sampled text is found as a reader sees it, and called a leak only when a training source
holds it verbatim before scrubbing (binary formats read through their extracted text)."""

from __future__ import annotations

import json

from selfsup.audit.regurgitation import _is_training_source, detect, mask, raw_occurrences, regurgitation_section
from selfsup.ingest import ingest_sources
from tests.conftest import small_recipe, write_reference_docs


def test_detect_reads_text_as_rendered():
    """`_jane.doe@example.com_` (Markdown emphasis) slips past the scrubber's word boundary; in sampled
    text the audit reads it without the emphasis and finds the address."""
    hits = detect([{"prompt": "From:", "text": "write to _jane.doe@example.com_ today"},
                   {"prompt": "IBAN", "text": "no personal data here"},
                   {"prompt": "To:", "text": "or jane.doe@example.com, or call +41 44 668 18 00"}])
    assert hits["jane.doe@example.com"]["samples"] == [0, 2] and hits["jane.doe@example.com"]["prompts"] == ["From:", "To:"]
    assert hits["+41 44 668 18 00"]["kind"] == "phone"


def test_mask_hides_most_of_the_value():
    assert mask("jane.doe@example.com") == "ja…@ex…om"
    assert "5678" not in mask("DE89370400440532013000")


def test_training_source_matches_pieces_of_a_file():
    sources = sorted(["a/notes.txt", "b/tickets.jsonl#line4", "c/mail.mbox#2"])
    assert _is_training_source("a/notes.txt", sources) and _is_training_source("b/tickets.jsonl", sources)
    assert not _is_training_source("a/other.txt", sources)


def test_a_leak_is_found_verbatim_in_a_raw_training_source(tmp_path):
    """A value in a training file's raw text (scrubbed from the corpus or not) is a leak with that file;
    one no training source holds is invented; a .docx is searched through its text."""
    import docx

    docs = write_reference_docs(tmp_path / "docs", n=30)
    (docs / "contacts.txt").write_text("Escalations go to _jane.doe@example.com_ on call.\n\n" + "Disk rota notes. " * 40)
    d = docx.Document()
    d.add_paragraph("Billing contact: billing.team@example.org, weekdays. " + "Invoices are sent monthly. " * 30)
    d.save(docs / "billing.docx")
    recipe = small_recipe([docs])
    recipe.corpus.validation_fraction = 0.0
    ingest_sources([docs], tmp_path / "corpus", recipe.corpus)
    values = ["jane.doe@example.com", "billing.team@example.org", "made.up@example.net"]
    raw = raw_occurrences(values, [docs], tmp_path / "corpus", recipe.corpus)
    assert [p.rsplit("/", 1)[-1] for p in raw["jane.doe@example.com"]] == ["contacts.txt"]
    assert [p.rsplit("/", 1)[-1] for p in raw["billing.team@example.org"]] == ["billing.docx"]
    assert raw["made.up@example.net"] == []
    hits = {v: {"kind": "email", "samples": [0], "prompts": ["From:"]} for v in values}
    section = regurgitation_section([{"prompt": "From:", "text": ""}], hits, raw, tmp_path / "corpus", 48)
    by_mask = {f["masked"]: f for f in section["found"]}
    assert section["leaks"] == 2 and by_mask["ja…@ex…om"]["leak"] and not by_mask["ma…@ex…et"]["leak"]
    assert by_mask["ja…@ex…om"]["in_training_text"] is True  # the scrubber missed it: the model saw it
    assert by_mask["bi…@ex…rg"]["in_training_text"] is False  # scrubbed: in the raw file only
    assert "jane.doe@example.com" not in json.dumps(section)
