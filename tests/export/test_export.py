"""Export: the directory loads and runs in plain transformers, with selfsup not importable."""

import json
import subprocess
import sys
import textwrap

import pytest

from selfsup.export import export_model
from selfsup.manifest import verify_manifest
from selfsup.train import train
from tests.conftest import small_recipe

NO_SELFSUP = "import sys; sys.modules['selfsup'] = None\n"  # any `import selfsup` now fails


def _run_plain_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", NO_SELFSUP + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_exported_model_loads_and_runs_in_transformers(prepared, tmp_path, objective):
    """Train briefly, export, then in a fresh interpreter without selfsup: AutoModel + pipeline
    load the directory and generate text (clm) / fill a mask (mlm)."""
    recipe = small_recipe([prepared["docs"]], objective, max_steps=3)
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    out = tmp_path / "model"
    manifest = export_model(tmp_path / "run", prepared["tokenizer"], out, recipe, fingerprint="fp-export")
    assert verify_manifest(out, "fp-export")[0]
    assert manifest["reload_max_logit_diff"] <= 1e-4
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (out / name).is_file()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    assert f"`{objective}`" in (out / "README.md").read_text()
    if objective == "clm":
        printed = _run_plain_python(f"""
            from transformers import AutoModelForCausalLM, pipeline
            m = AutoModelForCausalLM.from_pretrained({str(out)!r})
            g = pipeline("text-generation", model={str(out)!r})
            text = g("An attribute reference", max_new_tokens=8, do_sample=False)[0]["generated_text"]
            print(type(m).__name__, len(text) > len("An attribute reference"))
        """)
        assert printed.split() == ["LlamaForCausalLM", "True"]
    else:
        printed = _run_plain_python(f"""
            import json
            from transformers import pipeline
            fill = pipeline("fill-mask", model={str(out)!r})
            res = fill("An attribute reference is a <mask> followed by a period.")
            print(json.dumps([r["token_str"] for r in res]))
        """)
        assert len(json.loads(printed)) == 5
