"""The model card (README.md of the export): how the model was trained, how it scored, how to load it."""

from __future__ import annotations

from typing import Any

from selfsup import __version__
from selfsup.config import Recipe

USAGE = {
    "clm": """```python
from transformers import pipeline
generate = pipeline("text-generation", model="PATH/TO/THIS/DIRECTORY")
print(generate("Your prompt", max_new_tokens=40)[0]["generated_text"])
```""",
    "mlm": """```python
from transformers import pipeline
fill = pipeline("fill-mask", model="PATH/TO/THIS/DIRECTORY")
print(fill("The value is stored in a <mask>."))
```""",
    "fim": """```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/DIRECTORY")
model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/DIRECTORY")
prompt = "</s><fim_prefix>" + "text before the gap" + "<fim_suffix>" + "text after the gap" + "<fim_middle>"
ids = tok(prompt, return_tensors="pt").input_ids   # the sentinels are special tokens of this tokenizer
out = model.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=tok.eos_token_id)
print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))   # the middle
```""",
    "span": """```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/DIRECTORY")
model = AutoModelForSeq2SeqLM.from_pretrained("PATH/TO/THIS/DIRECTORY")
ids = tok("The value is <extra_id_0> in the table.</s>", return_tensors="pt").input_ids
print(tok.decode(model.generate(ids, max_new_tokens=10)[0]))   # <extra_id_0> and the missing span
```""",
    "embedding": """```python
import torch
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/DIRECTORY")
model = AutoModel.from_pretrained("PATH/TO/THIS/DIRECTORY")
batch = tok(["first passage", "second passage"], padding=True, return_tensors="pt")
hidden = model(**batch).last_hidden_state                      # (B, T, H)
mask = batch["attention_mask"].unsqueeze(-1).float()
embeddings = (hidden * mask).sum(1) / mask.sum(1)              # mean pooling over real tokens
embeddings = torch.nn.functional.normalize(embeddings, dim=-1) # compare by cosine / dot product
```

or, with sentence-transformers (the directory has its modules.json and 1_Pooling/):

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("PATH/TO/THIS/DIRECTORY")
embeddings = model.encode(["first passage", "second passage"], normalize_embeddings=True)
```""",
}
USAGE["contrastive"] = USAGE["tsdae"] = USAGE["embedding"]

PIPELINE_TAG = {"clm": "text-generation", "fim": "text-generation", "mlm": "fill-mask", "span": "text2text-generation",
                "contrastive": "sentence-similarity", "tsdae": "sentence-similarity"}

OBJECTIVE_TEXT = {
    "clm": "causal language modelling (predict the next token), documents packed into blocks with "
    "{document_mask} attention between documents",
    "mlm": "masked language modelling: {mask_rate:.0%} of ordinary tokens selected ({mlm_unit}); of those "
    "{mask_replace:.0%} replaced by the mask token, {random_replace:.0%} by a random token, the rest kept",
    "fim": "fill-in-the-middle: {fim_rate:.0%} of documents cut into prefix / middle / suffix at two random "
    "token positions and reordered ({spm_rate:.0%} suffix-prefix-middle, the rest prefix-suffix-middle) with the "
    "sentinels <fim_prefix>, <fim_suffix>, <fim_middle>; trained with the causal-LM loss, {document_mask} "
    "attention between documents",
    "span": "T5 span corruption: noise density {noise_density:g}, mean span length {mean_noise_span_length:g} "
    "tokens; each span replaced by a sentinel <extra_id_N> in the encoder input, the decoder writes the sentinels "
    "and their spans; raw blocks of {seq_len} tokens give encoder inputs of {input_len} and targets of {target_len}",
    "span_decoder": "span corruption for a decoder (causal masking, as CM3 and UL2R): noise density "
    "{noise_density:g}, mean span length {mean_noise_span_length:g} tokens; in each document every span is "
    "replaced by a sentinel <extra_id_N> and written again after the text, after its sentinel; trained with the "
    "causal-LM loss (sentinels standing in the text are not targets), {document_mask} attention between documents",
    "contrastive": "contrastive passage embeddings (InfoNCE over in-batch negatives, temperature {temperature:g}): "
    "passages of {passage_tokens} tokens, positive = {positive_text}; mean pooling over the last hidden states",
    "tsdae": "TSDAE (denoising auto-encoder): {deletion_rate:.0%} of the words of {passage_tokens}-token passages "
    "deleted, a decoder rebuilds the passage from the mean-pooled encoder output alone; the decoder is dropped "
    "at export; mean pooling over the last hidden states",
}

# Metric columns of the evaluation table, in this order, where the evaluation has them.
COLUMNS = {"bits_per_byte": "bits per byte", "perplexity": "perplexity", "masked_accuracy": "masked accuracy",
           "fim_exact_match": "middle exact match", "span_exact_match": "span exact match",
           "recall_at_1": "recall@1", "recall_at_10": "recall@10", "mrr": "MRR"}


def objective_text(recipe: Recipe) -> str:
    from selfsup.objectives.span import span_lengths

    o = recipe.objective
    input_len, target_len = span_lengths(recipe.pack.seq_len, o.noise_density, o.mean_noise_span_length)
    mlm_unit = "spans of whole words, SpanBERT" if o.mask_spans else ("whole words" if o.whole_word else "single tokens")
    positive_text = ("the next span of the same document (dropout noise on both views)" if o.positives == "neighbours"
                     else "the same passage under different dropout (SimCSE)")
    def text(name: str) -> str:
        key = "span_decoder" if name == "span" and recipe.decoder else name
        return OBJECTIVE_TEXT[key].format(
            **o.model_dump(exclude={"document_mask", "mix"}), document_mask="no" if o.document_mask else "full",
            mlm_unit=mlm_unit, seq_len=recipe.pack.seq_len, input_len=input_len, target_len=target_len,
            positive_text=positive_text,
        )

    if not o.mix:
        return text(o.name)
    total = sum(o.mix.values())
    return "a mix, each micro-batch drawn from one objective: " + "; ".join(
        f"{o.mix[n] / total:.0%} {n} ({text(n)})" for n in sorted(o.mix))


def _cell(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    if key in ("bits_per_byte", "mrr"):
        return f"{value:.3f}"
    if key == "perplexity":
        return f"{value:.1f}"
    return f"{value:.1%}"


def model_card(*, recipe: Recipe, parameters: int, run: dict[str, Any] | None, evaluation: dict[str, Any] | None,
               lineage: dict[str, Any] | None = None) -> str:
    o = recipe.objective
    objective = objective_text(recipe)
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {PIPELINE_TAG[recipe.model_objective]}",
        "tags: [selfsup, self-supervised]",
        "---",
        "",
        "# A domain model trained with selfsup",
        "",
        f"{_origin(recipe, lineage)} on an organisation's own documents, with no human labels, by selfsup {__version__}.",
        "",
        *_lineage_lines(recipe, lineage),
        "## Training",
        "",
        f"- Objective: `{o.label}` — {objective}.",
        "- `[objective]` settings: " + ", ".join(f"{k} = {v}" for k, v in o.model_dump(mode="json").items()),
        f"- Parameters: {parameters:,}",
        f"- Block length: {recipe.pack.seq_len} tokens; batch {recipe.train.batch_size} × {recipe.train.grad_accum} accumulation",
        f"- Optimiser: AdamW, peak lr {_peak_lr(recipe, run)}, {recipe.train.warmup_steps} warmup steps, "
        f"{recipe.train.schedule} to {recipe.train.min_lr_ratio:g}× peak, weight decay {recipe.train.weight_decay:g}, "
        f"seed {recipe.train.seed}",
    ]
    if run:
        lines += [
            f"- Ran {run.get('steps', '?')} steps, {run.get('tokens', 0):,} tokens in {run.get('elapsed_s', 0):.0f} s "
            f"on {run.get('device', '?')} ({run.get('precision', '?')}), {run.get('tokens_per_s', 0):,.0f} tokens/s",
        ]
    lines += ["", "## Evaluation", ""]
    if evaluation and evaluation.get("sets"):
        lines += [
            "Held-out documents (never trained on). Bits per byte compare across tokenizers; the unigram "
            "baseline predicts from token frequencies alone. Retrieval: a document's first passage must find "
            "its next passage among all held-out documents' (BM25 and the untrained model as baselines).",
            "",
        ]
        present = [k for k in COLUMNS if any(k in m for models in evaluation["sets"].values() for m in models.values())]
        lines += [
            "| text set | model | " + " | ".join(COLUMNS[k] for k in present) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in present) + " |",
        ]
        for set_name, models in evaluation["sets"].items():
            for name, m in models.items():
                lines.append(f"| {set_name} | {name} | " + " | ".join(_cell(k, m.get(k)) for k in present) + " |")
    else:
        lines.append("Not evaluated at export time.")
    lines += ["", "## Use", "", USAGE[recipe.model_objective], "", "Loads with plain `transformers`; no selfsup needed.", ""]
    return "\n".join(lines)


def _origin(recipe: Recipe, lineage: dict[str, Any] | None) -> str:
    base = (lineage or {}).get("base")
    if base:
        return f"Continued from the base model **{base['name']}**"
    if recipe.model.base:
        return f"Continued from `{recipe.model.base}`"
    return f"Trained from scratch (preset `{recipe.model.preset}`)"


def _lineage_lines(recipe: Recipe, lineage: dict[str, Any] | None) -> list[str]:
    """Which base this model is locked to, and which corpus made it: enough to tell two models apart."""
    if not lineage:
        return []
    lines = ["## Lineage", ""]
    base = lineage.get("base")
    if base:
        lines += [f"- Base model: `{base['given']}` ({base.get('model_type') or 'unknown family'})",
                  f"- Base fingerprint: `{base['fingerprint']}`"]
    else:
        lines.append(f"- No base model: trained from scratch (preset `{recipe.model.preset}`)")
    if lineage.get("corpus_digest"):
        lines.append(f"- Corpus manifest digest: `{lineage['corpus_digest']}`")
    return lines + [""]


def _peak_lr(recipe, run: dict | None) -> str:
    """The recipe's peak rate, or the one `lr = "auto"` chose (train/lr_search.py)."""
    chosen = ((run or {}).get("lr_search") or {}).get("chosen")
    if recipe.train.lr == "auto":
        return f"{chosen:g} (chosen by lr = \"auto\")" if chosen else "auto"
    return f"{recipe.train.lr:g}"
