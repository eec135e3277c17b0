"""GGUF import: a tiny Llama written as GGUF (F32, with its tokenizer) comes back as the same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from selfsup.errors import UsageError
from selfsup.manifest import verify_manifest
from selfsup.models import load_pretrained
from selfsup.models.gguf import gguf_fingerprint, import_gguf
from selfsup.tokens import load_tokenizer

gguf = pytest.importorskip("gguf")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf.py); transformers' GGUF reader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model: LlamaForCausalLM, tokenizer_dir: Path, path: Path) -> Path:
    """Write `model` and the byte-level BPE in `tokenizer_dir` as an F32 GGUF file, as llama.cpp would."""
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    tok = load_tokenizer(tokenizer_dir)
    vocab = {**spec["model"]["vocab"], **{t["content"]: t["id"] for t in spec["added_tokens"]}}
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        w = tensor.detach().float().numpy().copy()
        if hf_name.endswith("q_proj.weight"):
            w = _permute(w, c.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            w = _permute(w, c.num_key_value_heads)
        writer.add_tensor(names.get_name(hf_name, try_suffixes=(".weight",)), w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_imported_gguf_reproduces_the_original_logits(prepared, tmp_path):
    """Tiny Llama (grouped-query attention, untied head) → GGUF → import_gguf: the HF directory loads with
    plain transformers and through load_pretrained, gives the original's logits, and keeps the tokenizer."""
    torch.manual_seed(0)
    tok = load_tokenizer(prepared["tokenizer"])
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    original = LlamaForCausalLM(config).eval()
    path = write_llama_gguf(original, prepared["tokenizer"], tmp_path / "tiny.gguf")

    out = import_gguf(path, tmp_path / "base")
    assert verify_manifest(out, gguf_fingerprint(path))[0]
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.gguf"))
    imported = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    again = load_pretrained(out, "clm").eval()
    ids = torch.randint(0, len(tok), (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = original(input_ids=ids).logits
        assert torch.allclose(imported(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(again(input_ids=ids).logits, expected, atol=1e-5)

    imported_tok = AutoTokenizer.from_pretrained(out)
    text = "The lambda expression yields a function object."
    assert imported_tok(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert imported_tok.eos_token_id == tok.eos_token_id


def test_missing_gguf_file_is_a_usage_error(tmp_path):
    """A GGUF path that does not exist is reported by name, not as a traceback."""
    with pytest.raises(UsageError, match="does not exist"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
