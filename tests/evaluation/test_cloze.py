"""Cloze probes: salient terms, deterministic probes, ranks that a model which knows the term wins."""

import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from selfsup.evaluation.cloze import (
    knowledge_answers,
    knowledge_items,
    make_probes,
    rank_of_answer,
    ranks_of_answers,
    salient_terms,
    score_probes,
    summarise,
)

DOMAIN = [
    "The journal_mode pragma sets the rollback journal. The journal_mode pragma is persistent. "
    "Use the checkpoint command after writes. A checkpoint moves frames. The vacuum command rebuilds the file. "
    "Every checkpoint runs when the journal_mode is wal. Always vacuum after large deletes; vacuum is slow.",
]
GENERAL = ["The command was given and the file was moved after the writes. The file and the command again."]


@pytest.fixture(scope="module")
def word_tokenizer():
    """A whitespace word-level tokenizer: every word one piece, so salience is frequency-driven."""
    words = sorted({w for t in DOMAIN + GENERAL for w in t.replace(".", " .").replace(";", " ;").split()})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "<mask>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   mask_token="<mask>")


def test_salient_terms_are_frequent_in_domain_and_rare_in_general(word_tokenizer):
    """Words frequent in the domain and absent from general text rank first, a word the tokenizer
    splits into more pieces first among equals; words common in general text ('command', 'file')
    rank below them; words seen fewer than 3 times are not terms."""
    terms = salient_terms(DOMAIN, GENERAL, word_tokenizer)
    # 3 uses each, none in general text; the punctuation splitter cuts journal_mode into 3 pieces
    # (journal _ mode), the other two are 1 piece each and tie, ordered by spelling.
    assert terms[:3] == ["journal_mode", "checkpoint", "vacuum"]
    assert "rollback" not in terms  # once in the domain
    assert "command" not in terms or terms.index("command") > 2


def test_a_general_tokenizer_keeps_only_specific_terms(word_tokenizer):
    """With the base model's tokenizer as the judge of common words, a word it keeps whole
    ('checkpoint', 'vacuum': common to it) is no term, however salient in the domain; a word it
    splits, or one shaped like an identifier, stays."""
    vocab = {"[UNK]": 0, "checkpoint": 1, "vacuum": 2, "journal": 3}
    letters = sorted({c for t in DOMAIN for c in t.lower() if c.isalpha() or c == "_"})
    vocab |= {c: len(vocab) + i for i, c in enumerate(letters)}
    vocab |= {"##" + c: len(vocab) + i for i, c in enumerate(letters)}
    wp = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    general_tok = PreTrainedTokenizerFast(tokenizer_object=wp, unk_token="[UNK]")
    terms = salient_terms(DOMAIN, GENERAL, word_tokenizer, general_tokenizer=general_tok)
    assert "journal_mode" in terms  # identifier-shaped
    assert "checkpoint" not in terms and "vacuum" not in terms


def test_knowledge_items_hide_definitions_defaults_and_functions_among_their_own_kind():
    """Each kind of structure-mined item holds its true answer among k candidates drawn from answers of
    the same kind elsewhere in the domain, never one the sentence already contains."""
    domain = ["UPSERT is a clause added to INSERT. VACUUM is a command that rebuilds the file. "
              "WAL is a journal mode with readers and writers. FTS5 is an extension for full-text search. "
              "The default value is 1000. The default for the cache size is -2000. The default is off. "
              "The default value of the timeout is 5. Call sqlite3_open(name, &db) first. Then sqlite3_close(db) "
              "ends it. Use sqlite3_exec(db, sql, 0, 0, 0) for scripts. And sqlite3_step(stmt) for rows."]
    held = ["Lemon is a parser generator that SQLite uses for its grammar. The default value of the page size is 4096. "
            "Prepare with sqlite3_prepare_v2(db, zSql, -1, &stmt, 0) before stepping."]
    pools = knowledge_answers(domain)
    assert set(pools["definition"]) == {"UPSERT", "VACUUM", "WAL", "FTS5"}
    assert {"1000", "-2000", "off", "5"} <= set(pools["default"])
    items = knowledge_items(held, pools, n=9, k=4, seed=0)
    assert [(i.kind, i.answer) for i in items] == [("definition", "Lemon"), ("default", "4096"),
                                                   ("signature", "sqlite3_prepare_v2")]
    for item in items:
        assert item.answer in item.candidates and len(set(item.candidates)) == 4
        assert set(item.candidates) - {item.answer} <= set(pools[item.kind])
        assert item.with_candidate(item.answer) == item.sentence and "____" in item.masked()
    assert knowledge_items(held, pools, n=9, k=4, seed=0) == items


def test_probes_are_deterministic_and_hold_the_answer():
    """The same inputs give the same probes; each has the answer among k distinct candidates and
    the masked text lacks exactly that occurrence."""
    terms = [f"term{i}" for i in range(10)]
    texts = ["We talk about term3 here in a long enough sentence. Nothing salient in this other sentence at all.",
             "Then term7 and term1 appear in one more sentence."]
    a = make_probes(texts, terms, n=10, k=4, seed=1)
    b = make_probes(texts, terms, n=10, k=4, seed=1)
    assert a == b and len(a) == 2
    assert a[0].answer == "term3" and a[1].answer == "term1"  # the most salient term of the sentence
    for p in a:
        assert p.answer in p.candidates and len(set(p.candidates)) == 4
        assert "____" in p.masked() and p.with_candidate(p.answer) == p.sentence


def test_rank_ties_count_against_the_answer_and_summary_arithmetic():
    """Rank 1 only when strictly best; a tie with a distractor is rank 2. MRR of ranks 1,2,4 is (1+.5+.25)/3."""
    assert rank_of_answer([3.0, 1.0, 2.0], 0) == 1
    assert rank_of_answer([3.0, 3.0, 2.0], 0) == 2
    assert rank_of_answer([0.0, 0.0, 0.0], 1) == 3
    s = summarise([1, 2, 4], k=4)
    assert s["top1"] == pytest.approx(1 / 3) and s["mrr"] == pytest.approx(1.75 / 3)


def test_clm_model_that_prefers_the_answer_ranks_it_first(word_tokenizer):
    """A causal model whose output bias favours the answer's token ranks the answer first on every probe;
    biased towards a distractor, the answer loses."""
    terms = ["checkpoint", "vacuum", "pragma", "frames", "command"]  # one token each under this tokenizer
    probes = make_probes(DOMAIN, terms, n=3, k=3, seed=0)
    assert probes
    V = len(word_tokenizer)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, tie_word_embeddings=False))
    torch.nn.init.zeros_(model.lm_head.weight)
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(V))
    for probe in probes:
        model.lm_head.bias.data.zero_()
        model.lm_head.bias.data[word_tokenizer.convert_tokens_to_ids(probe.answer)] = 5.0
        [scores] = score_probes(model, word_tokenizer, [probe], "clm", device=torch.device("cpu"), amp_dtype=None)
        assert ranks_of_answers([probe], [scores]) == [1]
        other = next(c for c in probe.candidates if c != probe.answer)
        model.lm_head.bias.data.zero_()
        model.lm_head.bias.data[word_tokenizer.convert_tokens_to_ids(other)] = 5.0
        [scores] = score_probes(model, word_tokenizer, [probe], "clm", device=torch.device("cpu"), amp_dtype=None)
        assert ranks_of_answers([probe], [scores])[0] > 1
        assert all(math.isfinite(s) for s in scores)


def test_cloze_summary_reports_each_kind_of_probe_apart():
    from selfsup.evaluation.cloze import Probe
    from selfsup.evaluation.lift import cloze_summary

    probes = [Probe("a x b", 2, 3, "x", ["x", "y"], "term"), Probe("c y d", 2, 3, "y", ["x", "y"], "default"),
              Probe("e x f", 2, 3, "x", ["y", "x"], "default")]
    scores = {"trained": [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]}  # right, right, wrong
    summary = cloze_summary(probes, scores, k=2)
    assert summary["models"]["trained"]["top1"] == 2 / 3
    assert summary["kinds"]["term"]["trained"]["top1"] == 1.0
    assert summary["kinds"]["default"]["trained"]["top1"] == 0.5 and summary["kinds"]["default"]["chance"]["probes"] == 2
    assert [e["kind"] for e in summary["examples"]] == ["term", "default", "default"]
