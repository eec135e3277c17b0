"""llama.cpp itself runs the GGUF selfsup writes (`make check-gguf` installs llama-cpp-python; skipped
where it is not installed, since building llama.cpp takes minutes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.export.gguf import export_gguf
from tests.export.test_gguf_export import _model_dir

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.mark.slow
@pytest.mark.parametrize("tied,kv_heads", [(True, 2), (False, 4)])
def test_llama_cpp_gives_the_trained_models_logits_and_greedy_tokens(prepared, tmp_path, tied, kv_heads):
    """The f16 file in llama.cpp: next-token logits of a prompt within 0.05 of the trained model's (f16
    weights, llama.cpp's own kernels), and the same greedy token wherever the trained model's top two
    are not a near-tie."""
    model_dir, model = _model_dir(prepared, tmp_path, tied=tied, kv_heads=kv_heads)
    export_gguf(model_dir, model, "f16")
    llm = llama_cpp.Llama(model_path=str(model_dir / "model-f16.gguf"), n_ctx=64, logits_all=True, verbose=False)
    ids = torch.randint(300, model.config.vocab_size, (20,), generator=torch.Generator().manual_seed(5)).tolist()
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
    diff = float(np.abs(theirs - ours).max())
    assert diff < 0.05
    top2 = np.sort(ours, axis=-1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * diff
    assert decided.any() and (ours.argmax(-1) == theirs.argmax(-1))[decided].all()
