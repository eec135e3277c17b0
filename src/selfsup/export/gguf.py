"""Write `model/model-<quant>.gguf` for llama.cpp, Ollama and LM Studio, in Python alone, and check it.

Tools that export GGUF usually shell out to a llama.cpp checkout and fail on a missing binary, an
unknown pre-tokenizer after a vocabulary change, or a lost chat template. The `gguf` package
(llama.cpp's own Python writer) has everything needed: the tensor-name map, the quantisers for
f16, bf16 and q8_0, the key names. So the file is written here, from the exported HF directory:

- **Architectures:** llama-family decoders (`llama`, `mistral`: llama.cpp's `llama`, whose rotary
  layout needs q and k permuted as llama.cpp's converter does) and `qwen2` (no permutation, q/k/v
  biases). Others are refused before any work, naming these.
- **Weights:** 1-D tensors (norms, biases) in f32; matrices in the asked type (q8_0: rows whose
  length is a multiple of 32, else f16, as llama.cpp's converter does). A tied head is not
  written: llama.cpp reads the token embeddings for it.
- **Tokenizer:** a base that came as GGUF keeps its tokenizer keys (model, pre-tokenizer, tokens,
  merges, types, special ids, chat template), with tokens added by `[tokenizer] extend` appended
  as user-defined tokens, matched whole before BPE as the HF tokenizer matches its added tokens.
  Otherwise the keys come from `tokenizer.json`: byte-level BPE only, the pre-tokenizer named from
  the few regexes llama.cpp knows by name, else "default" (recorded as a warning).
- **Metadata:** a GGUF base's other keys (general.*, licence, languages) are carried over except
  what training changed (file type, name).

Success is reported only after the file is read back by `transformers` (`gguf_file=`, an
independent reader that undoes the permutation and dequantises): its logits must match the
trained model's within `LOGIT_BOUND[quant]` and its greedy continuation must be the same
(`verify_gguf`). K-quants
cannot be written by the `gguf` package: the refusal gives the `llama-quantize` command instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from selfsup.errors import StageFailure, UsageError

ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}  # HF model_type → GGUF architecture
PERMUTED = {"llama"}  # GGUF architectures whose q/k rows llama.cpp expects in its rotary layout
QUANTS = ("f16", "bf16", "q8_0")
K_QUANTS = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q4_k_m", "q5_0", "q5_1", "q5_k_s",
            "q5_k_m", "q6_k", "iq4_xs", "iq4_nl", "iq3_m", "iq2_m")
# Largest |logit difference| accepted between the trained model and the GGUF read back, over every
# vocabulary entry at every position of the check's prompt. f16/bf16 round every weight once; q8_0
# keeps 8 bits per weight with a scale per 32. SmolLM2-135M adapted on git-doc measured 0.067 (f16),
# 0.39 (bf16) and 1.54 (q8_0; its logits span ~30), with the same 8 greedy tokens each
# (docs/export.md); the bounds are about twice that.
LOGIT_BOUND = {"f16": 0.25, "bf16": 1.0, "q8_0": 3.0}
GREEDY_TOKENS = 8
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. In the beginning"
GGUF_TOKENIZER_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")
REWRITTEN = ("general.file_type", "general.quantization_version", "general.architecture", "general.alignment")
# llama.cpp names the pre-tokenizers it knows; a tokenizer.json whose split regex is one of these
# gets the name, anything else "default" (llama.cpp's fallback split).
KNOWN_PRE_TOKENIZERS = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+": "gpt-2",
}


def check_gguf_request(model_type: str | None, quants: list[str]) -> None:
    """Refuse what cannot be written, before any work, with what to do instead."""
    for q in quants:
        if q.lower() in K_QUANTS:
            raise UsageError(
                f"GGUF quantisation {q} cannot be written in Python (the gguf package writes {', '.join(QUANTS)}). "
                f"Export f16 and quantise it with llama.cpp: llama-quantize model/model-f16.gguf "
                f"model/model-{q.lower()}.gguf {q.upper()}")
        if q not in QUANTS:
            raise UsageError(f"unknown GGUF quantisation {q!r}: choose from {', '.join(QUANTS)}")
    if model_type is not None and model_type not in ARCHITECTURES:
        raise UsageError(f"GGUF export supports {', '.join(sorted(ARCHITECTURES))} decoders; this model is "
                         f"{model_type!r}. The HF directory is exported; convert it with llama.cpp's "
                         "convert_hf_to_gguf.py if llama.cpp supports the architecture.")


def export_gguf(model_dir: Path, model: torch.nn.Module, quant: str, *, base_gguf: Path | None = None) -> dict[str, Any]:
    """`model_dir` (the verified HF export) → `model_dir/model-<quant>.gguf`, read back and checked.

    `model` is the trained model the HF directory holds (float32, eval mode). Returns a summary
    for the export manifest: file, size, the logit difference and greedy agreement measured."""
    import gguf

    config = model.config
    check_gguf_request(config.model_type, [quant])
    arch = ARCHITECTURES[config.model_type]
    base = _base_fields(base_gguf)
    out = Path(model_dir) / f"model-{quant}.gguf"
    partial = out.with_suffix(".gguf.partial")
    try:
        writer = gguf.GGUFWriter(partial, arch)
        _write_metadata(writer, config, quant, base)
        warnings = _write_tokenizer(writer, Path(model_dir), base)
        _write_tensors(writer, model, config, arch, quant)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        check = verify_gguf(partial, model, quant, probe_ids(model_dir))
    except BaseException:
        partial.unlink(missing_ok=True)  # a file that failed its check is not left to be mistaken for one
        raise
    os.replace(partial, out)
    return {"file": out.name, "quant": quant, "bytes": out.stat().st_size, **check,
            **({"warnings": warnings} if warnings else {})}


# ---------------------------------------------------------------------------------------------
# metadata


def _base_fields(base_gguf: Path | None) -> dict[str, tuple[Any, list]]:
    """key → (value, types) of a GGUF base's metadata; empty when the base was not GGUF."""
    if base_gguf is None or not Path(base_gguf).is_file():
        return {}
    from gguf import GGUFReader

    reader = GGUFReader(base_gguf)
    return {k: (f.contents(), list(f.types)) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _write_metadata(writer, config, quant: str, base: dict) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    name = getattr(config, "_name_or_path", "") or "model"
    writer.add_name(f"{base['general.name'][0] if 'general.name' in base else Path(name).name} (selfsup)")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is not None:
        writer.add_rope_freq_base(float(theta))
    scaling = rope.get("rope_type", "default") if rope else "default"
    if scaling not in ("default", None):
        raise UsageError(f"GGUF export does not write rope scaling {scaling!r} yet; the HF directory is exported")
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    written = set(writer.kv_data[0])
    for key, (value, types) in base.items():  # the base's other keys (licence, languages, ...) as they were
        if key in written or key in REWRITTEN or key.startswith("tokenizer."):
            continue
        writer.add_key_value(key, value, types[0], sub_type=types[-1] if len(types) > 1 else None)


def _write_tokenizer(writer, model_dir: Path, base: dict) -> list[str]:
    """Tokenizer keys from the GGUF base (extended tokens appended) or from tokenizer.json."""
    import gguf

    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok_config = _read_json(model_dir / "tokenizer_config.json")
    vocab = _vocabulary(tok)  # id → (text, type)
    warnings: list[str] = []
    if "tokenizer.ggml.tokens" in base:
        tokens = list(base["tokenizer.ggml.tokens"][0])
        types = list(base["tokenizer.ggml.token_type"][0])
        for i in range(len(tokens), len(vocab)):  # [tokenizer] extend: new ids after the base's
            tokens.append(vocab[i][0])
            types.append(int(gguf.TokenType.USER_DEFINED))
        for key, (value, kinds) in base.items():
            if key.startswith("tokenizer.") and key not in GGUF_TOKENIZER_KEYS:
                writer.add_key_value(key, value, kinds[0], sub_type=kinds[-1] if len(kinds) > 1 else None)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        if "tokenizer.ggml.scores" in base:
            writer.add_token_scores(list(base["tokenizer.ggml.scores"][0]) + [0.0] * (len(tokens) - len(base["tokenizer.ggml.scores"][0])))
        return warnings
    model = tok.get("model", {})
    if model.get("type") != "BPE" or not _byte_level(tok):
        raise UsageError("GGUF export writes byte-level BPE tokenizers (GPT-2 style) from tokenizer.json; this "
                         f"one is {model.get('type')!r}. Export from a GGUF base, or convert with llama.cpp.")
    writer.add_tokenizer_model("gpt2")
    pre = _pre_tokenizer_name(tok)
    if pre == "default":
        warnings.append("pre-tokenizer not one llama.cpp knows by name: written as 'default', so llama.cpp may "
                        "split text into tokens differently from transformers")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list([text for text, _ in vocab])
    writer.add_token_types([kind for _, kind in vocab])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])])
    special = gguf.SpecialVocab(model_dir, load_merges=False, n_vocab=len(vocab))
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_bos_token(bool(tok_config.get("add_bos_token", False)))
    return warnings


def _vocabulary(tok: dict) -> list[tuple[str, int]]:
    """tokenizer.json → [(token text, GGUF token type)] in id order, added tokens included."""
    import gguf

    by_id: dict[int, tuple[str, int]] = {i: (t, int(gguf.TokenType.NORMAL)) for t, i in tok["model"]["vocab"].items()}
    for added in tok.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], int(kind))
    size = max(by_id) + 1
    return [by_id.get(i, (f"[PAD{i}]", int(gguf.TokenType.UNUSED))) for i in range(size)]


def _byte_level(tok: dict) -> bool:
    def kinds(node):
        if not node:
            return []
        return [k for n in node.get("pretokenizers", []) for k in kinds(n)] if node.get("type") == "Sequence" else [node.get("type")]

    return "ByteLevel" in kinds(tok.get("pre_tokenizer"))


def _pre_tokenizer_name(tok: dict) -> str:
    node = tok.get("pre_tokenizer") or {}
    nodes = node.get("pretokenizers", [node]) if node.get("type") == "Sequence" else [node]
    for n in nodes:
        pattern = (n.get("pattern") or {}).get("Regex")
        if pattern in KNOWN_PRE_TOKENIZERS:
            return KNOWN_PRE_TOKENIZERS[pattern]
        if n.get("type") == "ByteLevel" and n.get("use_regex", True) and len(nodes) == 1:
            return "gpt-2"
    return "default"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# ---------------------------------------------------------------------------------------------
# tensors


def _write_tensors(writer, model: torch.nn.Module, config, arch: str, quant: str) -> None:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp uses the token embeddings as the head
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise StageFailure(f"GGUF export: no GGUF name for tensor {hf_name!r} of a {arch} model")
        data = tensor.detach().float().cpu().numpy()
        if arch in PERMUTED and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute_for_rope(data, heads)
        elif arch in PERMUTED and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute_for_rope(data, kv_heads)
        qtype = _tensor_type(data, quant)
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def permute_for_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotary layout (halves) → llama.cpp's (interleaved pairs), per head: as convert_hf_to_gguf.py."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensor_type(data: np.ndarray, quant: str):
    from gguf import GGMLQuantizationType as T

    if data.ndim <= 1:
        return T.F32
    if quant == "q8_0":
        return T.Q8_0 if data.shape[-1] % 32 == 0 else T.F16
    return T.BF16 if quant == "bf16" else T.F16


# ---------------------------------------------------------------------------------------------
# verification


@torch.no_grad()
def verify_gguf(path: Path, model: torch.nn.Module, quant: str, ids: torch.Tensor) -> dict[str, Any]:
    """Read `path` back with transformers' GGUF loader; compare logits and a greedy continuation.

    The trained model continues `ids` greedily; both models then score that whole sequence. The
    logits must agree within the quantisation's bound, and the reloaded model must choose the same
    next token at every continued position, except where the trained model's own top two are
    closer than the rounding measured (a near-tie any rounding may flip: reported, not failed)."""
    reloaded = _read_back(path)
    sequence = _greedy(model, ids)
    a, b = model(input_ids=sequence).logits.float()[0], reloaded(input_ids=sequence).logits.float()[0]
    diff = float((a - b).abs().max())
    if not diff <= LOGIT_BOUND[quant]:
        raise StageFailure(f"{path.name} does not reproduce the trained model: logits differ by up to {diff:.3g} "
                           f"(bound for {quant}: {LOGIT_BOUND[quant]})")
    positions = range(ids.shape[1] - 1, sequence.shape[1] - 1)
    top2 = a[list(positions)].topk(2, dim=-1).values
    agree = (a[list(positions)].argmax(-1) == b[list(positions)].argmax(-1)).tolist()
    near_tie = ((top2[:, 0] - top2[:, 1]) <= 2 * diff).tolist()
    if not all(x or tie for x, tie in zip(agree, near_tie)):
        first = next(i for i, (x, tie) in enumerate(zip(agree, near_tie)) if not (x or tie))
        raise StageFailure(f"{path.name}: the greedy continuation differs from the trained model's at token {first + 1}")
    return {"max_logit_diff": diff, "greedy_tokens": len(agree), "greedy_tokens_agreeing": int(sum(agree)),
            "greedy_ids": sequence[0, ids.shape[1]:].tolist()}


def _read_back(path: Path) -> torch.nn.Module:
    """The GGUF file loaded by transformers (its own reader and dequantiser), float32."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    staging = path.parent / ".gguf-check"  # transformers wants a folder and a file name ending in .gguf
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            os.link(path, staging / "model.gguf")
        except OSError:
            shutil.copyfile(path, staging / "model.gguf")
        with _quiet_gguf_reader():
            return AutoModelForCausalLM.from_pretrained(staging, gguf_file="model.gguf", dtype=torch.float32).eval()
    except Exception as exc:  # noqa: BLE001 - any failure to read it back is the export's failure
        raise StageFailure(f"the GGUF file {path.name} could not be read back by transformers: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _quiet_gguf_reader():
    """transformers' GGUF reader draws its own tqdm bar, which the switch above does not reach."""
    import transformers.modeling_gguf_pytorch_utils as reader

    if not hasattr(reader, "tqdm"):
        yield
        return
    with mock.patch.object(reader, "tqdm", lambda iterable, **_: iterable):
        yield


def probe_ids(model_dir: Path) -> torch.Tensor:
    """The check's prompt, tokenized by the exported tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)(PROBE_TEXT, return_tensors="pt")["input_ids"]


def _greedy(model, ids: torch.Tensor) -> torch.Tensor:
    out = ids
    for _ in range(GREEDY_TOKENS):
        nxt = model(input_ids=out).logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    return out


# ---------------------------------------------------------------------------------------------
# Ollama

CHATML = '''{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ .Response }}<|im_end|>
'''
LLAMA3 = '''{{ if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>

{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

{{ .Response }}<|eot_id|>'''
MAX_OLLAMA_CONTEXT = 4096


def chat_template_of(model_dir: Path) -> str | None:
    """The Jinja chat template the exported tokenizer carries (from the base), if any."""
    path = Path(model_dir) / "chat_template.jinja"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    template = _read_json(Path(model_dir) / "tokenizer_config.json").get("chat_template")
    return template if isinstance(template, str) else None


def write_modelfile(model_dir: Path, gguf_name: str, config) -> dict[str, Any]:
    """An Ollama Modelfile beside the GGUF: FROM, the chat format as an Ollama TEMPLATE, stops, sampling.

    Ollama's templates are Go templates, not Jinja: the two chat formats most open bases use
    (ChatML, Llama 3's headers) are recognised in the base's template and written in Go; any other
    template is left out and the model is served as a plain completion model (said in the file)."""
    jinja = chat_template_of(model_dir) or ""
    tok = _read_json(Path(model_dir) / "tokenizer_config.json")
    eos = tok.get("eos_token") if isinstance(tok.get("eos_token"), str) else None
    if "<|im_start|>" in jinja:
        chat, template, stops = "ChatML", CHATML, ["<|im_end|>", "<|im_start|>"]
    elif "<|start_header_id|>" in jinja:
        chat, template, stops = "Llama 3", LLAMA3, ["<|eot_id|>", "<|start_header_id|>"]
    else:
        chat, template, stops = None, "{{ .Prompt }}", []
    if eos and eos not in stops:
        stops.append(eos)
    context = min(int(getattr(config, "max_position_embeddings", MAX_OLLAMA_CONTEXT)), MAX_OLLAMA_CONTEXT)
    lines = [
        "# Ollama: ollama create my-model -f Modelfile && ollama run my-model",
        f"# chat format: {chat} (from the base's chat template)" if chat else
        "# no chat template recognised in the base: served as a plain completion model",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        *[f'PARAMETER stop "{s}"' for s in stops],
        "PARAMETER temperature 0.8",
        "PARAMETER top_k 50",
        "PARAMETER top_p 0.95",
        f"PARAMETER num_ctx {context}",
    ]
    (Path(model_dir) / "Modelfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"file": "Modelfile", "from": gguf_name, "chat_format": chat, "stops": stops}


def card_section(files: list[dict[str, Any]], modelfile: dict[str, Any]) -> str:
    """The model card's "Run it locally" section: the GGUF files, their checks and the commands."""
    rows = "\n".join(f"| `{f['file']}` | {f['bytes'] / 2**20:.0f} MiB | {f['max_logit_diff']:.3g} | "
                     f"{f['greedy_tokens_agreeing']}/{f['greedy_tokens']} |" for f in files)
    first = files[0]["file"]
    return f"""
## Run it locally (GGUF: llama.cpp, Ollama, LM Studio)

| file | size | max \\|logit difference\\| vs this model | greedy tokens the same |
|---|---|---|---|
{rows}

Each file was read back with `transformers` (`gguf_file=`) and compared with the trained model
before the export reported success.

```sh
llama-cli -m {first} -p "Your prompt" -n 64        # llama.cpp
ollama create my-model -f Modelfile && ollama run my-model   # Ollama ({modelfile['chat_format'] or 'completion'} format)
```
"""
