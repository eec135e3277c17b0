"""Write `WORKDIR/model/`: config.json, model.safetensors, tokenizer files, README.md model card.

The directory is plain Hugging Face format: `AutoModelForCausalLM` (clm, fim) /
`AutoModelForMaskedLM` (mlm) / `AutoModelForSeq2SeqLM` (span) / `AutoModel` (contrastive, tsdae:
the encoder only, with mean pooling), `AutoTokenizer` and `transformers.pipeline` load it with no
selfsup installed. Embedding models also get the sentence-transformers layout (modules.json,
sentence_bert_config.json, 1_Pooling/config.json), so `SentenceTransformer(dir)` loads them too. Export does not
trust its own writing: it reloads the directory with `transformers` and checks that the logits
match the checkpoint's before it reports success (and before writing the manifest).

A checkpoint trained with LoRA adapters (config.json `selfsup_lora`) is exported merged:
`load_pretrained` folds the adapters into the base weights with peft's `merge_and_unload`, so the
directory holds one plain model of the base's architecture, loadable without peft; the manifest
records `merged_lora`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import json

from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GenerationConfig,
)

from selfsup.config import Recipe, settings_hash
from selfsup.console import esc, say
from selfsup.errors import StageFailure
from selfsup.evaluation.evaluate import read_eval, resolve_model_dir
from selfsup.export.model_card import model_card
from selfsup.manifest import write_manifest
from selfsup.models import count_parameters, load_pretrained
from selfsup.models.build import EMBEDDING_OBJECTIVES
from selfsup.models.lora import CONFIG_KEY as LORA_CONFIG_KEY
from selfsup.objectives.contrastive import encoder_of, mean_pool
from selfsup.tokens import load_tokenizer, special_ids

LOGITS_TOLERANCE = 1e-4


def export_fingerprint(recipe: Recipe, *digests: str | None) -> str:
    return settings_hash("export", recipe.objective.name, *digests)


def export_model(
    model_path: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    recipe: Recipe,
    *,
    eval_path: Path | None = None,
    run_summary: dict[str, Any] | None = None,
    fingerprint: str = "",
    lineage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out_dir = Path(out_dir)
    checkpoint = resolve_model_dir(model_path)
    objective = recipe.model_objective  # "clm" for every decoder run (span on a decoder, a mix)
    merged_lora = _trained_with_lora(checkpoint)
    model = load_pretrained(checkpoint, objective).eval()  # LoRA adapters merged in (models/lora.py)
    if objective in EMBEDDING_OBJECTIVES:
        model = encoder_of(model)  # tsdae's decoder was only there to train the encoder
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = special_ids(tokenizer)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for key in ("bos", "eos", "pad"):
        if ids[key] is not None:
            setattr(model.config, f"{key}_token_id", ids[key])
    if objective in ("clm", "fim"):
        model.generation_config = GenerationConfig(
            bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"],
            do_sample=True, temperature=0.8, top_k=50, max_new_tokens=64,
        )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if objective in EMBEDDING_OBJECTIVES:
        write_sentence_transformers_files(out_dir, model, max_seq_length=recipe.pack.seq_len, base=recipe.model.base)
    evaluation = read_eval(eval_path) if eval_path else None
    (out_dir / "README.md").write_text(
        model_card(recipe=recipe, parameters=count_parameters(model), run=run_summary, evaluation=evaluation, lineage=lineage),
        encoding="utf-8",
    )
    max_diff = verify_export(out_dir, model, objective)
    gguf = export_gguf_files(out_dir, model, recipe) if "gguf" in recipe.export.formats else None
    manifest = write_manifest(out_dir, stage="export", fingerprint=fingerprint,
                              extra={"objective": objective, "checkpoint": str(checkpoint), "reload_max_logit_diff": max_diff,
                                     "merged_lora": merged_lora, "lineage": lineage, **({"gguf": gguf} if gguf else {})})
    say(f"[green]exported[/] {esc(out_dir)} (reloaded with transformers; logits match within {max_diff:.1e})")
    return manifest


def export_gguf_files(out_dir: Path, model: torch.nn.Module, recipe: Recipe) -> dict[str, Any]:
    """`[export] formats` has "gguf": one file per `quant`, each read back and checked, then the
    Ollama Modelfile (from the first) and the model card's section on running it locally."""
    from selfsup.export.gguf import card_section, check_gguf_request, export_gguf, write_modelfile

    check_gguf_request(model.config.model_type, recipe.export.quant)
    base_gguf = gguf_base_file(recipe.model.base)
    files = []
    for quant in recipe.export.quant:
        files.append(export_gguf(out_dir, model, quant, base_gguf=base_gguf))
        f = files[-1]
        say(f"[green]GGUF[/] {esc(out_dir / f['file'])} ({f['bytes'] / 2**20:.0f} MiB; read back by transformers, logits "
            f"within {f['max_logit_diff']:.2g}, greedy {f['greedy_tokens_agreeing']}/{f['greedy_tokens']} the same)")
    modelfile = write_modelfile(out_dir, files[0]["file"], model.config)
    with open(out_dir / "README.md", "a", encoding="utf-8") as card:
        card.write(card_section(files, modelfile))
    return {"files": files, "modelfile": modelfile, "base_gguf": str(base_gguf) if base_gguf else None}


def gguf_base_file(base: Path | None) -> Path | None:
    """The GGUF file the base came from (given directly, or recorded when it was imported), if any."""
    if base is None:
        return None
    if Path(base).suffix.lower() == ".gguf":
        return Path(base)
    manifest = Path(base) / "manifest.json"
    if manifest.is_file():
        source = json.loads(manifest.read_text(encoding="utf-8")).get("source")
        if source and Path(source).suffix.lower() == ".gguf" and Path(source).is_file():
            return Path(source)
    return None


def _trained_with_lora(checkpoint: Path) -> bool:
    return LORA_CONFIG_KEY in json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))


AUTO_CLASSES = {"clm": AutoModelForCausalLM, "fim": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM,
                "span": AutoModelForSeq2SeqLM, "contrastive": AutoModel, "tsdae": AutoModel}


def write_sentence_transformers_files(out_dir: Path, model, *, max_seq_length: int, base: Path | None = None) -> None:
    """sentence-transformers' layout around the HF files: Transformer module at the root, then mean pooling.

    A base that is itself a sentence-transformers model keeps its own modules (its Normalize, its
    max_seq_length, its prompts and similarity function), so a user's code that loads the base
    loads the adapted model unchanged; only the pooling is written as training pooled: mean."""
    base_modules = Path(base) / "modules.json" if base is not None else None
    if base_modules is not None and base_modules.is_file():
        modules = json.loads(base_modules.read_text(encoding="utf-8"))
        for name in ("sentence_bert_config.json", "config_sentence_transformers.json"):
            if (Path(base) / name).is_file():
                shutil.copyfile(Path(base) / name, out_dir / name)
        for module in modules:
            if module.get("path") and (Path(base) / module["path"]).is_dir():
                shutil.copytree(Path(base) / module["path"], out_dir / module["path"])
    else:
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        (out_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2))
    pooling_dir = out_dir / next((m["path"] for m in modules if m["type"].endswith(".Pooling")), "1_Pooling")
    pooling_dir.mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": model.config.hidden_size,
        "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True,
    }
    (pooling_dir / "config.json").write_text(json.dumps(pooling, indent=2))


@torch.no_grad()
def verify_export(out_dir: Path, original: torch.nn.Module, objective: str) -> float:
    """Reload with plain transformers and compare outputs on a real sentence; raise if they differ.

    Language models compare logits; embedding models compare mean-pooled embeddings."""
    reloaded = AUTO_CLASSES[objective].from_pretrained(out_dir, use_safetensors=True, trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")["input_ids"]
    if objective in EMBEDDING_OBJECTIVES:
        mask = torch.ones_like(ids)
        a = mean_pool(original(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask)
        b = mean_pool(reloaded(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask)
    else:
        extra = {"decoder_input_ids": ids[:, :4]} if objective == "span" else {}
        a = original(input_ids=ids, **extra).logits.float()
        b = reloaded(input_ids=ids, **extra).logits.float()
    diff = (a - b).abs().max().item()
    if not diff <= LOGITS_TOLERANCE:
        raise StageFailure(f"exported model in {out_dir} does not reproduce the checkpoint (max difference {diff:.3g})")
    return diff
