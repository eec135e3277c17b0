"""GGUF export: a tiny llama-family model → model-<quant>.gguf that transformers' own GGUF reader loads
back with the same logits; a Modelfile that names the chat format and its stops; clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from selfsup.config import Recipe
from selfsup.errors import UsageError
from selfsup.export import export_model
from selfsup.export.gguf import LOGIT_BOUND, check_gguf_request, export_gguf, write_modelfile
from selfsup.manifest import verify_manifest
from selfsup.tokens import load_tokenizer
from selfsup.train import train
from tests.conftest import small_recipe

gguf = pytest.importorskip("gguf")

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}")


def _model_dir(prepared, tmp_path: Path, *, tied: bool, kv_heads: int = 2, family: str = "llama", extra_tokens=()):
    """A tiny random model saved as an HF directory with the prepared tokenizer (plus `extra_tokens`)."""
    torch.manual_seed(0)
    tok = load_tokenizer(prepared["tokenizer"])
    if extra_tokens:
        tok.add_tokens(list(extra_tokens))
    kw = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=kv_heads, max_position_embeddings=128, tie_word_embeddings=tied,
              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = (LlamaForCausalLM(LlamaConfig(**kw)) if family == "llama" else Qwen2ForCausalLM(Qwen2Config(**kw))).eval()
    out = tmp_path / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model


@pytest.mark.parametrize("tied,kv_heads,family", [(True, 2, "llama"), (False, 4, "llama"), (True, 2, "qwen2")])
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gguf_reads_back_in_transformers_with_the_trained_logits(prepared, tmp_path, tied, kv_heads, family, quant):
    """Tied or untied head, grouped-query or full attention, llama (q/k permuted for llama.cpp's rotary
    layout) or qwen2 (not permuted, biased q/k/v): transformers' GGUF reader, which undoes the
    permutation itself, gives the trained model's logits within the quantisation's bound."""
    model_dir, model = _model_dir(prepared, tmp_path, tied=tied, kv_heads=kv_heads, family=family)
    summary = export_gguf(model_dir, model, quant)
    path = model_dir / f"model-{quant}.gguf"
    assert summary["file"] == path.name and path.stat().st_size == summary["bytes"]
    assert summary["max_logit_diff"] <= LOGIT_BOUND[quant]
    reader = gguf.GGUFReader(path)
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) == (not tied)  # llama.cpp reads a tied head from token_embd
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == "F32" and kinds["blk.0.ffn_up.weight"] == quant.upper()
    assert reader.fields["general.architecture"].contents() == family
    reloaded = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=path.name, dtype=torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        diff = (reloaded(input_ids=ids).logits - model(input_ids=ids).logits).abs().max().item()
    assert diff <= LOGIT_BOUND[quant]
    assert diff < 0.02 if quant == "f16" else diff > 0  # f16 is near-exact; q8_0 really quantised
    assert not list(model_dir.glob("*.partial")) and not (model_dir / ".gguf-check").exists()


def test_a_gguf_base_keeps_its_metadata_and_extended_tokens_are_appended(prepared, tmp_path):
    """Exported from a base that came as GGUF: the base's keys (licence, pre-tokenizer, its token
    list and merges) are carried; the tokens `[tokenizer] extend` added follow the base's, as
    user-defined tokens; the file type is the new one."""
    base_dir, base_model = _model_dir(prepared, tmp_path / "b", tied=True)
    export_gguf(base_dir, base_model, "f16")
    base_file = base_dir / "model-f16.gguf"
    tagged = tmp_path / "base.gguf"  # the same file with a licence and a pre-tokenizer name of its own
    reader = gguf.GGUFReader(base_file)
    writer = gguf.GGUFWriter(tagged, "llama")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = "smollm" if key == "tokenizer.ggml.pre" else field.contents()
        writer.add_key_value(key, value, field.types[0], sub_type=field.types[-1] if len(field.types) > 1 else None)
    writer.add_license("apache-2.0")
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    new = ("sqlite3_prepare_v2", " PRAGMA")
    model_dir, model = _model_dir(prepared, tmp_path / "m", tied=True, extra_tokens=new)
    export_gguf(model_dir, model, "q8_0", base_gguf=tagged)
    out = gguf.GGUFReader(model_dir / "model-q8_0.gguf")
    fields = {k: f.contents() for k, f in out.fields.items()}
    assert fields["general.license"] == "apache-2.0" and fields["tokenizer.ggml.pre"] == "smollm"
    assert fields["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    base_tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[: len(base_tokens)] == base_tokens and tuple(tokens[len(base_tokens):]) == new
    assert types[len(base_tokens):] == [int(gguf.TokenType.USER_DEFINED)] * 2
    assert fields["tokenizer.ggml.merges"] == reader.fields["tokenizer.ggml.merges"].contents()


def test_the_modelfile_carries_the_chat_format_and_its_stops(prepared, tmp_path):
    """A ChatML base (SmolLM2, Qwen) gets Ollama's ChatML template and <|im_end|> as a stop; a base
    with no chat template is served as plain completion, and says so."""
    model_dir, model = _model_dir(prepared, tmp_path, tied=True)
    plain = write_modelfile(model_dir, "model-q8_0.gguf", model.config)
    text = (model_dir / "Modelfile").read_text()
    assert plain["chat_format"] is None and "FROM ./model-q8_0.gguf" in text and "completion" in text
    (model_dir / "chat_template.jinja").write_text(CHATML)
    chat = write_modelfile(model_dir, "model-q8_0.gguf", model.config)
    text = (model_dir / "Modelfile").read_text()
    assert chat["chat_format"] == "ChatML" and "<|im_start|>assistant" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER num_ctx 128" in text


def test_gguf_requests_that_cannot_be_written_are_refused_before_any_work():
    """K-quants name the llama-quantize command; other architectures name the supported ones;
    an encoder objective with gguf is a config error naming [export] formats."""
    with pytest.raises(UsageError, match="llama-quantize model/model-f16.gguf model/model-q4_k_m.gguf Q4_K_M"):
        check_gguf_request("llama", ["q4_k_m"])
    with pytest.raises(UsageError, match="llama, mistral, qwen2"):
        check_gguf_request("gpt2", ["f16"])
    with pytest.raises(ValueError, match="llama-quantize"):
        Recipe.model_validate({"export": {"formats": ["hf", "gguf"], "quant": "Q4_K_M"}})
    with pytest.raises(ValueError, match=r"\[export\] formats"):
        Recipe.model_validate({"objective": {"name": "mlm"}, "export": {"formats": ["gguf"]}})
    assert Recipe.model_validate({"export": {"quant": "F16"}}).export.quant == ["f16"]


def test_export_stage_writes_verified_gguf_files_the_manifest_covers(prepared, tmp_path):
    """[export] formats = ["hf", "gguf"]: the export stage trains nothing new, writes both quants,
    the Modelfile and the model card's run-it-locally section, and its manifest hashes them all."""
    recipe = small_recipe([prepared["docs"]], "clm", max_steps=2)
    recipe.export.formats = ["hf", "gguf"]
    recipe.export.quant = ["f16", "q8_0"]
    train(prepared["shards"], prepared["tokenizer"], tmp_path / "run", recipe, fingerprint="fp")
    out = tmp_path / "model"
    manifest = export_model(tmp_path / "run", prepared["tokenizer"], out, recipe, fingerprint="fp-export")
    assert verify_manifest(out, "fp-export")[0]
    assert {"model-f16.gguf", "model-q8_0.gguf", "Modelfile"} <= set(manifest["files"])
    assert [f["quant"] for f in manifest["gguf"]["files"]] == ["f16", "q8_0"]
    assert "llama-cli -m model-f16.gguf" in (out / "README.md").read_text()
    assert json.loads((out / "manifest.json").read_text())["gguf"]["modelfile"]["from"] == "model-f16.gguf"
