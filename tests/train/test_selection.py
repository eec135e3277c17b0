"""[train] select = "learnable": the base scores the training blocks, the run leaves out what it already
predicts and what stays near random, within a tenth of the budget; the choice is saved and kept on resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from selfsup.config import apply_continue_defaults, recipe_from_dict
from selfsup.errors import ConfigError, StageFailure
from selfsup.train import find_latest, train
from selfsup.train.selection import FILE, SCORE_TOKENS, Selection, score_blocks, scoring_limits, select_blocks
from tests.conftest import small_recipe
from tests.models.test_lora import tiny_base
from tests.train.conftest import die_after_first_save, same_weights, weights

VOCAB, SEQ, EOS = 64, 512, 0
PATTERN = np.tile(np.arange(10, 18), SEQ // 8)  # a cycle the model is taught: it predicts it well


class Blocks:
    """Blocks held in memory, with the interface of the packed shards (len, seq_len, blocks)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows, self.seq_len = rows, rows.shape[1]

    def __len__(self) -> int:
        return len(self.rows)

    def blocks(self, indices) -> np.ndarray:
        return self.rows[np.asarray(indices)]


@pytest.fixture(scope="module")
def taught():
    """A tiny Llama taught the cycle, and 100 blocks: 20 of the pure cycle (known), 78 of the cycle with a
    third of its tokens replaced (learnable), 2 of uniform noise (near random)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=SEQ))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cycle = torch.from_numpy(np.stack([np.roll(PATTERN, -k) for k in range(8)])[:, : SCORE_TOKENS + 1]).long()
    for _ in range(60):
        opt.zero_grad()
        model(input_ids=cycle, labels=cycle).loss.backward()
        opt.step()
    rows = np.stack([np.roll(PATTERN, -int(rng.integers(8))) for _ in range(100)])
    noisy = rows[20:98]
    swap = rng.random(noisy.shape) < 0.33
    noisy[swap] = rng.integers(20, VOCAB, swap.sum())
    rows[98:] = rng.integers(1, VOCAB, (2, SEQ))
    kinds = np.array(["known"] * 20 + ["learnable"] * 78 + ["random"] * 2)
    order = rng.permutation(100)
    return model.eval(), Blocks(rows[order]), kinds[order]


def _cfg(**kw):
    base = dict(max_steps=None, max_tokens=None, max_minutes=None, batch_size=2, grad_accum=1)
    return SimpleNamespace(**{**base, **kw})


def _select(taught, **cfg):
    model, data, _ = taught
    return select_blocks(model, data, _cfg(**cfg), seed=0, tokens_per_step=2 * SEQ, default_steps=200,
                         byte_lengths=np.ones(VOCAB, dtype=np.int32), eos_id=EOS, device=torch.device("cpu"),
                         amp_dtype=None)


def test_the_base_scores_what_it_knows_low_and_noise_high(taught):
    """Bits per byte under the base order the kinds of block: the taught cycle < the cycle with noise < noise."""
    model, data, kinds = taught
    bpb, rate = score_blocks(model, data, np.arange(100), np.ones(VOCAB, dtype=np.int32), EOS, torch.device("cpu"),
                             None, max_blocks=None, seconds=None)
    assert rate > 0 and len(bpb) == 100
    assert bpb[kinds == "known"].max() < bpb[kinds == "learnable"].min()
    assert bpb[kinds == "learnable"].max() < bpb[kinds == "random"].min()


def test_a_long_budget_leaves_out_the_known_fifth_and_the_noise(taught):
    """2000 steps of 2×512 tokens: scoring every block costs far less than their tenth, and 78 blocks are far
    fewer than the 4000 the run needs, so it trains on every block but the twenty the base knows and the two
    of noise, and says so."""
    _, _, kinds = taught
    sel = _select(taught, max_steps=2000)
    assert len(sel.scored) == 100 and not sel.only_scored
    assert set(kinds[sel.kept]) == {"learnable"} and len(sel.kept) == 78
    s = sel.summary()
    assert (s["left_out_known"], s["left_out_random"], s["kept"]) == (20, 2, 78)
    assert "left out 20 it already predicts" in sel.describe()


def test_a_short_budget_scores_a_tenth_of_its_cost_and_trains_on_what_passed(taught):
    """5 steps of 2×512 tokens: scoring the first 128 tokens of a block costs a third of 128 training tokens,
    so a tenth of 5120 pays for ceil(512 / 42.7) = 12 blocks, the first twelve of the run's own order. What
    passes covers the 10 blocks the run needs within two passes: it trains on those alone."""
    _, _, kinds = taught
    sel = _select(taught, max_steps=5)
    assert len(sel.scored) == 12 and sel.only_scored
    assert set(sel.kept) <= set(sel.scored) and 5 <= len(sel.kept) < 12
    assert "known" not in set(kinds[sel.kept]) or len(sel.kept) * 2 >= 10


def test_budgets_set_what_scoring_may_cost():
    """Steps and tokens fix the planned tokens (the first bound reached); minutes fix the seconds; no bound
    at all is the default step count."""
    assert scoring_limits(_cfg(max_steps=10, max_tokens=5000), 1024, 200) == (5000, None)
    assert scoring_limits(_cfg(max_minutes=10), 1024, 200) == (None, 60.0)
    assert scoring_limits(_cfg(), 1024, 200) == (200 * 1024, None)


def test_replay_keeps_its_share_of_the_kept_blocks(taught):
    """Replay rows are never scored or left out, and stay a replay_fraction share of what the run trains on."""
    model, data, kinds = taught
    mix = Blocks(np.concatenate([data.rows, data.rows[:25]]))
    mix.n_domain, mix.fraction = 100, 0.2
    sel = select_blocks(model, mix, _cfg(max_steps=2000), seed=0, tokens_per_step=2 * SEQ, default_steps=200,
                        byte_lengths=np.ones(VOCAB, dtype=np.int32), eos_id=EOS, device=torch.device("cpu"),
                        amp_dtype=None)
    assert sel.scored.max() < 100
    replay = sel.kept[sel.kept >= 100]
    assert len(replay) == round(78 * 0.2 / 0.8) and replay.max() < 125


def test_the_choice_is_saved_and_read_back(taught, tmp_path):
    sel = _select(taught, max_steps=2000)
    sel.save(tmp_path)
    back = Selection.load(tmp_path)
    assert np.array_equal(back.kept, sel.kept) and np.array_equal(back.scored, sel.scored)
    assert back.summary() == pytest.approx(sel.summary())


def test_select_needs_a_base_decoder():
    with pytest.raises(ConfigError, match="select"):
        recipe_from_dict({"train": {"select": "learnable"}})


@pytest.fixture(scope="module")
def select_recipe(prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    recipe = small_recipe([prepared["docs"]], max_steps=12, precision="fp32", eval_every=100, select="learnable",
                          checkpoint_every_steps=6, compile=False)  # eager: bitwise resume
    recipe.model.base = tiny_base(prepared["tokenizer"], root / "base")
    return root, apply_continue_defaults(recipe)


def test_a_selecting_run_records_its_choice_and_resumes_on_the_same_blocks(prepared, select_recipe, monkeypatch):
    """The real loop on a tiny base: the selection is logged, saved and summarised in run.json; killed after
    its first checkpoint, the run resumes from the saved choice (no second scoring) and ends bit for bit where
    the uninterrupted run ended; without the saved choice a resume stops with a message."""
    root, recipe = select_recipe
    summary = train(prepared["shards"], prepared["tokenizer"], root / "straight", recipe, fingerprint="fp")
    sel = summary["selection"]
    assert sel["scored"] > 0 and sel["kept"] + sel["left_out_known"] + sel["left_out_random"] <= sel["blocks"]
    assert sel["score_tokens"] == SCORE_TOKENS
    events = [json.loads(x) for x in (root / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "selection" for e in events)

    resumed = root / "resumed"
    die_after_first_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(prepared["shards"], prepared["tokenizer"], resumed, recipe, fingerprint="fp")
    assert find_latest(resumed)[0].name == "step-6"
    import selfsup.train.loop as loop

    monkeypatch.setattr(loop, "select_blocks", lambda *a, **k: pytest.fail("a resumed run scored again"))
    train(prepared["shards"], prepared["tokenizer"], resumed, recipe, fingerprint="fp")
    assert same_weights(weights(root / "straight"), weights(resumed))

    (resumed / FILE).unlink()
    (resumed / "checkpoints" / "step-12").rename(resumed / "gone")  # resume from step 6 again, without the choice
    with pytest.raises(StageFailure, match="select"):
        train(prepared["shards"], prepared["tokenizer"], resumed, recipe, fingerprint="fp")
