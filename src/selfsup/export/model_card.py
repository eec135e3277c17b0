"""The model card (README.md of the export): how the model was trained, how it scored, how to load it."""

from __future__ import annotations

from typing import Any

from selfsup import __version__
from selfsup.config import Recipe

USAGE = {
    "clm": '''```python
from transformers import pipeline
generate = pipeline("text-generation", model="PATH/TO/THIS/DIRECTORY")
print(generate("Your prompt", max_new_tokens=40)[0]["generated_text"])
```''',
    "mlm": '''```python
from transformers import pipeline
fill = pipeline("fill-mask", model="PATH/TO/THIS/DIRECTORY")
print(fill("The value is stored in a <mask>."))
```''',
}

OBJECTIVE_TEXT = {
    "clm": "causal language modelling (predict the next token), documents packed into blocks with "
    "{document_mask} attention between documents",
    "mlm": "masked language modelling: {mask_rate:.0%} of ordinary tokens selected; of those "
    "{mask_replace:.0%} replaced by the mask token, {random_replace:.0%} by a random token, the rest kept",
}


def model_card(*, recipe: Recipe, parameters: int, run: dict[str, Any] | None, evaluation: dict[str, Any] | None) -> str:
    o = recipe.objective
    objective = OBJECTIVE_TEXT[o.name].format(
        document_mask="no" if o.document_mask else "full",
        mask_rate=o.mask_rate, mask_replace=o.mask_replace, random_replace=o.random_replace,
    )
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {'text-generation' if o.name == 'clm' else 'fill-mask'}",
        "tags: [selfsup, self-supervised]",
        "---",
        "",
        "# A domain model trained with selfsup",
        "",
        f"Trained from {'`' + str(recipe.model.base) + '`' if recipe.model.base else 'scratch (preset `' + recipe.model.preset + '`)'} "
        f"on an organisation's own documents, with no human labels, by selfsup {__version__}.",
        "",
        "## Training",
        "",
        f"- Objective: `{o.name}` — {objective}.",
        f"- Parameters: {parameters:,}",
        f"- Block length: {recipe.pack.seq_len} tokens; batch {recipe.train.batch_size} × {recipe.train.grad_accum} accumulation",
        f"- Optimiser: AdamW, peak lr {recipe.train.lr:g}, {recipe.train.warmup_steps} warmup steps, cosine to "
        f"{recipe.train.min_lr_ratio:g}× peak, weight decay {recipe.train.weight_decay:g}, seed {recipe.train.seed}",
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
            "baseline predicts from token frequencies alone.",
            "",
            "| text set | model | bits per byte | perplexity | masked accuracy |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for set_name, models in evaluation["sets"].items():
            for name, m in models.items():
                acc = f"{m['masked_accuracy']:.1%}" if "masked_accuracy" in m else "—"
                lines.append(f"| {set_name} | {name} | {m['bits_per_byte']:.3f} | {m['perplexity']:.1f} | {acc} |")
    else:
        lines.append("Not evaluated at export time.")
    lines += ["", "## Use", "", USAGE[o.name], "", "Loads with plain `transformers`; no selfsup needed.", ""]
    return "\n".join(lines)
