"""Cleaning and de-duplication inside an ingest: exact reasons in the audit, counts in the manifest."""

import json
import random

from selfsup.config import CorpusConfig
from selfsup.dedup import document_id
from selfsup.ingest import ingest_sources, read_documents

rng = random.Random(0)
WORDS = "pump valve seal housing fluid pressure gauge drain bolt torque filter gasket intake outlet motor".split()
BODY = " ".join(rng.choice(WORDS) for _ in range(300)) + "."
FRENCH = "Le café est très bon. À Noël, nous mangeons des crêpes et du pâté. Ça coûte cher, même à Paris."


def test_cleaning_and_near_duplicates_in_one_ingest(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_v1.txt").write_text("Service manual, version 1\n\n" + BODY, encoding="utf-8")
    (docs / "b_v2.txt").write_text("Service manual, exported again (version 2)\n\n" + BODY, encoding="utf-8")
    (docs / "c_v2_copy.txt").write_text("Service manual, exported again (version 2)\n\n" + BODY, encoding="utf-8")
    (docs / "d_noise.txt").write_text("12 | 34 | 56 | 78 | 90 | ## | -- | 11 | 22 | 33 | 44", encoding="utf-8")
    (docs / "e_french.txt").write_text(FRENCH, encoding="utf-8")
    (docs / "f_contacts.txt").write_text("Write to ops@example.com or call +1 415 555 0100 about host 10.1.2.3.", encoding="utf-8")
    (docs / "g_mojibake.txt").write_text("The cafÃ© on the third floor sells crÃ¨me brÃ»lÃ©e to the pump team.", encoding="utf-8")
    cfg = CorpusConfig(workers=1, languages=["en"], validation_fraction=0.0)
    manifest = ingest_sources([docs], tmp_path / "corpus", cfg)
    audit = {json.loads(x)["path"].removeprefix(f"{docs}/"): json.loads(x) for x in (tmp_path / "corpus" / "audit.jsonl").read_text().splitlines()}
    original = audit["a_v1.txt"]["doc_id"]
    assert (audit["b_v2.txt"]["status"], audit["b_v2.txt"]["reason"], audit["b_v2.txt"]["doc_id"]) == ("duplicate", f"near_duplicate_of:{original}", original)
    assert audit["c_v2_copy.txt"]["reason"] == f"near_duplicate_of:{original}"  # an exact copy of a near-duplicate
    assert audit["d_noise.txt"]["reason"] == "filtered:symbols"
    assert audit["e_french.txt"]["reason"] == "filtered:language"
    texts = {d["source"].removeprefix(f"{docs}/"): d for d in read_documents(tmp_path / "corpus", columns=("text", "source"))}
    assert texts["f_contacts.txt"]["text"] == "Write to <EMAIL> or call <PHONE> about host <IP>."
    assert texts["g_mojibake.txt"]["text"] == "The café on the third floor sells crème brûlée to the pump team."
    assert audit["f_contacts.txt"]["doc_id"] == document_id(texts["f_contacts.txt"]["text"])
    assert manifest["pii"] == {"email": 1, "ip": 1, "phone": 1}
    assert manifest["near_duplicates"] == 1 and manifest["mojibake_fixed"] == 1
    assert manifest["languages"] == {"en": 3}
    assert manifest["dropped"] == {"near_duplicate": 2, "filtered:symbols": 1, "filtered:language": 1}
    assert manifest["formats"]["text"] == {"files": 7, "bytes": sum(f.stat().st_size for f in docs.iterdir()), "documents": 3}


def test_pii_and_near_dedup_can_be_turned_off(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Version 1\n\n" + BODY + " Mail ops@example.com.", encoding="utf-8")
    (docs / "b.txt").write_text("Version 2\n\n" + BODY + " Mail ops@example.com.", encoding="utf-8")
    manifest = ingest_sources([docs], tmp_path / "corpus", CorpusConfig(workers=0, pii=False, near_dedup=False))
    assert manifest["documents"] == 2 and manifest["pii"] == {}
    assert all("ops@example.com" in d["text"] for d in read_documents(tmp_path / "corpus"))
