"""Structure mining: headings are found in the forms readers produce (plain, Markdown, reST),
wrapped lines are not taken for headings, passages stay near their size, and every pair's
positive leaves its query out."""

from selfsup.pairs.structure import MIN_PASSAGE_WORDS, mine_documents, passages_of, split_sentences, words

BODY = ("The journal records every change before it is written. A crash in the middle of a write leaves "
        "the journal behind. The next reader rolls the change back, so the file is whole again.")

PAGE = f"""Atomic Commit

{BODY}

2.1. Hot Journals
A journal that needs rolling back is called hot. Readers look for one before they read anything else. The
check costs one file lookup.
"""


def test_plain_text_headings_open_sections_and_become_title_queries():
    passages, pairs = mine_documents([PAGE], seed=0)
    assert [p.heading for p in passages] == ["Atomic Commit", "Hot Journals"]  # section number dropped
    titles = [(p.query, p.positive) for p in pairs if p.kind == "title"]
    assert titles == [("Atomic Commit", BODY), ("Hot Journals", passages[1].text)]


def test_markdown_and_rest_headings_are_found():
    md = f"# Backups\n\n{BODY}\n"
    rest = f"Backups\n=======\n\n{BODY}\n"
    for text in (md, rest):
        assert [p.heading for p in passages_of(text, 0)] == ["Backups"]


def test_wrapped_lines_and_code_are_not_headings():
    wrapped = ("When the trusted schema option is disabled, SQLite\nrefuses to run functions that are not innocuous "
               "from inside triggers and views of the schema.\n")
    code = f"int rc = sqlite3_open(zName, &db);\n{BODY}\n"
    tail = f"{BODY} The journal is\nthen deleted\n{BODY}\n"  # a short line that ends a sentence begun above
    for text in (wrapped, code, tail):
        assert all(p.heading == "" for p in passages_of(text, 0)), text


def test_passages_are_cut_near_the_word_budget_between_sentences():
    long = " ".join(f"Sentence number {i} says one more thing about journals." for i in range(60))
    passages = passages_of(long, 0, passage_words=50)
    assert len(passages) > 5
    assert all(MIN_PASSAGE_WORDS <= len(words(p.text)) <= 50 for p in passages)
    assert all(p.text.endswith(".") for p in passages)  # cut between sentences, never inside one


def test_first_sentence_and_ict_positives_leave_the_query_out():
    passages, pairs = mine_documents([PAGE], seed=0)
    kinds = {p.kind for p in pairs}
    assert {"first_sentence", "ict"} <= kinds
    for p in pairs:
        if p.kind != "title":
            assert p.query not in p.positive
            assert set(split_sentences(passages[p.passage].text)) == set(split_sentences(p.positive)) | {p.query}


def test_mining_is_seeded():
    texts = [PAGE * 3, BODY * 4]
    assert mine_documents(texts, seed=3) == mine_documents(texts, seed=3)
    assert [p.query for p in mine_documents(texts, 3)[1] if p.kind == "ict"] != \
        [p.query for p in mine_documents(texts, 4)[1] if p.kind == "ict"]
