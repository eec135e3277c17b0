"""GGUF export of a real adapted model, checked by llama.cpp itself (`make check-gguf`).

Exports a trained run (by default the SmolLM2-135M run `bench/lift.py` leaves) to GGUF f16 and
q8_0 through selfsup's export stage, then prints for each file: its size, the largest logit
difference against the trained model as transformers reads the file back, and the greedy
continuation of one prompt from the trained model (transformers), from the file read back by
transformers, and from llama.cpp (llama-cpp-python) running the file. Needs llama-cpp-python
(`make check-gguf` installs it; it builds llama.cpp from source, minutes on 2 cores).

    python bench/check_gguf.py [--run DIR --tokenizer DIR] [--prompt TEXT] [--tokens N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

LIFT_RUN = Path("/tmp/selfsup-bench/lift-git/runs-4min/ours/run")
LIFT_TOKENIZER = Path("/tmp/selfsup-bench/lift-git/tokenizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=LIFT_RUN, help="a training run directory (run.json inside)")
    parser.add_argument("--tokenizer", type=Path, default=LIFT_TOKENIZER)
    parser.add_argument("--prompt", default="To create a new branch and switch to it, run")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="where to write the model (default: a temporary folder)")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfsup.config import recipe_from_dict
    from selfsup.export import export_model

    try:
        from llama_cpp import Llama
    except ImportError:
        sys.exit("llama-cpp-python is not installed: make check-gguf installs it (pip install llama-cpp-python)")
    if not (args.run / "run.json").is_file():
        sys.exit(f"no finished run in {args.run}: run `python bench/lift.py --quick --corpus git` first "
                 "(it leaves SmolLM2-135M adapted on git-doc there), or pass --run and --tokenizer")
    recipe = recipe_from_dict(json.loads((args.run / "run.json").read_text())["recipe"])
    recipe.export.formats = ["hf", "gguf"]
    recipe.export.quant = ["f16", "q8_0"]
    out = args.out or Path(tempfile.mkdtemp(prefix="check-gguf-")) / "model"
    started = time.perf_counter()
    manifest = export_model(args.run, args.tokenizer, out, recipe)
    print(f"exported in {time.perf_counter() - started:.0f}s to {out}")

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(args.prompt, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    reference = greedy_transformers(model, ids, args.tokens)
    rows = [("trained model (transformers)", "", "", reference)]
    for f in manifest["gguf"]["files"]:
        path = out / f["file"]
        staging = Path(tempfile.mkdtemp())
        shutil.copyfile(path, staging / "m.gguf")
        from_file = AutoModelForCausalLM.from_pretrained(staging, gguf_file="m.gguf", dtype=torch.float32).eval()
        rows.append((f"{f['file']} (transformers)", f"{f['bytes'] / 2**20:.0f} MiB", f"{f['max_logit_diff']:.3f}",
                     greedy_transformers(from_file, ids, args.tokens)))
        shutil.rmtree(staging)
        llm = Llama(model_path=str(path), n_ctx=256, n_threads=os.cpu_count(), verbose=False)
        rows.append((f"{f['file']} (llama.cpp)", "", "", greedy_llama_cpp(llm, ids[0].tolist(), args.tokens)))
        del llm
    print(f"\nprompt: {args.prompt!r}, {args.tokens} greedy tokens\n")
    print(f"{'model':<34} {'size':>8} {'max dlogit':>10}  same as trained  continuation")
    results = {}
    for name, size, diff, tokens in rows:
        same = sum(1 for _ in _prefix(tokens, reference))
        text = tokenizer.decode(tokens)
        print(f"{name:<34} {size:>8} {diff:>10}  {same:>2}/{len(reference):<13} {text!r}")
        results[name] = {"tokens": tokens, "text": text, "same_prefix": same}
    print(json.dumps({"prompt": args.prompt, "files": manifest["gguf"]["files"], "greedy": results}))


def greedy_transformers(model, ids, n: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


def greedy_llama_cpp(llm, ids: list[int], n: int) -> list[int]:
    tokens = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        if len(tokens) == n or token == llm.token_eos():
            break
        tokens.append(token)
    return tokens


def _prefix(a: list[int], b: list[int]):
    for x, y in zip(a, b):
        if x != y:
            return
        yield x


if __name__ == "__main__":
    main()
