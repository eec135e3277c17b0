"""mix: several decoder objectives in one run, one drawn per micro-batch from the seeded generator."""

import pytest
import torch

from selfsup.config import ObjectiveConfig, Recipe
from selfsup.errors import ConfigError
from selfsup.config import recipe_from_dict
from selfsup.objectives import CausalLM, DecoderSpanCorruption, MixedObjective, get_objective

IDS = {"pad": 0, "eos": 2, "bos": None, "fim_prefix": 5, "fim_middle": 6, "fim_suffix": 7,
       **{f"extra_id_{i}": 8 + i for i in range(32)}}


def _mix(shares: dict[str, float]) -> MixedObjective:
    return get_objective(ObjectiveConfig(mix=shares), IDS, 1000, decoder=True)


def test_shares_are_met_and_the_draw_is_a_function_of_the_seed_only():
    """Over 2,000 micro-batches a 75/25 mix draws within 3 points of its shares; the same seed draws the
    same objective however the recipe listed the mix (resume and world size cannot change it)."""
    a, b = _mix({"clm": 3.0, "span": 1.0}), _mix({"span": 1.0, "clm": 3.0})
    draws = [a.draw(torch.Generator().manual_seed(s)) for s in range(2000)]
    assert abs(draws.count("span") / 2000 - 0.25) < 0.03
    assert draws == [b.draw(torch.Generator().manual_seed(s)) for s in range(2000)]
    assert a.counts(torch.Generator().manual_seed(s) for s in range(2000)) == {"clm": draws.count("clm"), "span": draws.count("span")}


def test_each_micro_batch_is_made_whole_by_the_drawn_objective_with_one_clm_loss():
    mix = _mix({"clm": 0.5, "span": 0.5})
    blocks = torch.randint(40, 999, (2, 64), generator=torch.Generator().manual_seed(0))
    seen = set()
    for seed in range(20):
        name = mix.draw(torch.Generator().manual_seed(seed))
        batch = mix.make_batch(blocks, torch.Generator().manual_seed(seed))
        alone = mix.parts[name].make_batch(blocks, _after_draw(seed))
        assert all(torch.equal(batch[k], alone[k]) for k in batch)
        seen.add(name)
    assert seen == {"clm", "span"}
    assert isinstance(mix.clm, CausalLM) and isinstance(mix.parts["span"], DecoderSpanCorruption)


def _after_draw(seed: int) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    torch.rand(1, generator=g)
    return g


def test_the_main_objective_is_the_largest_share_unless_named():
    assert ObjectiveConfig(mix={"clm": 0.2, "fim": 0.8}).name == "fim"
    assert ObjectiveConfig(name="clm", mix={"clm": 0.2, "fim": 0.8}).name == "clm"
    assert ObjectiveConfig(mix={"clm": 0.5, "span": 0.5}).label == "mix: clm 50% + span 50%"


@pytest.mark.parametrize("section, message", [
    ({"mix": {"clm": 0.5, "mlm": 0.5}}, "mlm trains another kind of model"),
    ({"mix": {"clm": 0.5, "fim": 0.0}}, "a share above 0"),
    ({"name": "span", "mix": {"clm": 0.5, "fim": 0.5}}, "not in mix"),
    ({"mix": {"clm": 0.5, "span": 0.5}}, r"set \[model\] base to a decoder"),
])
def test_a_mix_that_cannot_train_one_decoder_names_the_field_and_the_fix(section, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict({"objective": section})


def test_span_on_a_decoder_base_is_a_decoder_run(tmp_path):
    """span alone trains T5 from scratch, a decoder on a decoder base (a .gguf, or an HF directory of a causal LM)."""
    assert Recipe.model_validate({"objective": {"name": "span"}}).model_objective == "span"
    gguf = Recipe.model_validate({"objective": {"name": "span"}, "model": {"base": str(tmp_path / "m.gguf")}})
    assert gguf.decoder and gguf.model_objective == "clm"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "t5", "is_encoder_decoder": true}')
    assert Recipe.model_validate({"objective": {"name": "span"}, "model": {"base": str(tmp_path / "hf")}}).model_objective == "span"
