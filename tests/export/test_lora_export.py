"""Export of a LoRA run: one plain merged model that loads in transformers with peft not importable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

from selfsup.export import export_model
from selfsup.models import load_base_for_training
from selfsup.train import find_latest, train
from tests.models.test_lora import lora_recipe, tiny_base

BLOCKED = "import sys; sys.modules['peft'] = None; sys.modules['selfsup'] = None\n"  # any import of them fails


def test_exported_lora_model_loads_without_peft_and_reproduces_the_trained_logits(prepared, tmp_path):
    """Train with LoRA, export, then in a fresh interpreter where peft and selfsup cannot be imported:
    AutoModelForCausalLM loads the directory and its logits equal the trained (unmerged) adapted model's."""
    base = tiny_base(prepared["tokenizer"], tmp_path / "base")
    recipe = lora_recipe(prepared, base)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    out = tmp_path / "model"
    manifest = export_model(tmp_path / "run", prepared["tokenizer"], out, recipe, fingerprint="fp-export")
    assert manifest["merged_lora"] is True
    config = json.loads((out / "config.json").read_text())
    assert "selfsup_lora" not in config and not list(out.glob("adapter*"))

    ids = torch.randint(0, 400, (1, 20), generator=torch.Generator().manual_seed(5))
    adapted = load_base_for_training(recipe.model, "clm", prepared["tokenizer"])
    adapted.load_state_dict(load_file(find_latest(tmp_path / "run")[0] / "model.safetensors"), strict=False)
    with torch.no_grad():
        expected = adapted.eval()(input_ids=ids).logits

    code = BLOCKED + textwrap.dedent(f"""
        import json, torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(out)!r}, use_safetensors=True).eval()
        assert not any("lora" in k for k in model.state_dict())
        with torch.no_grad():
            print(json.dumps(model(input_ids=torch.tensor({ids.tolist()})).logits.tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    logits = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))
    assert torch.allclose(logits, expected, atol=1e-4)
