"""Corpus → token blocks: our pack stage against `datasets.map` + `group_texts` (run_clm style).

Same corpus (the sample corpus, repeated to size), same tokenizer, same block length, one
process; the two are timed alternately (--repeat) and each keeps its best time. Also reports
tiktoken's bare encoder on the same text as the ceiling for BPE speed on this CPU (our pack runs
the tokenizer's merges in tiktoken, with identical ids, plus reading, id mapping and writing), and
the peak RSS of our pack stage at two corpus sizes 10x apart, each in a fresh child process: it
must not grow with the corpus.

    python bench/pack_throughput.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from common import CACHE, emit, prepared_data

from selfsup.config import PackConfig
from selfsup.ingest import iter_texts
from selfsup.pack import pack_corpus


def scaled_corpus(base: Path, copies: int) -> Path:
    """The sample corpus's train documents repeated `copies` times, as a corpus directory."""
    out = CACHE / f"corpus-x{copies}"
    if (out / "part-00000.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for batch in iter_texts(base, split="train") for t in batch]
    with pq.ParquetWriter(out / "part-00000.parquet", pa.schema([("id", pa.string()), ("text", pa.string()),
                                                                 ("source", pa.string()), ("split", pa.string())])) as w:
        for c in range(copies):
            w.write_table(pa.table({"id": [f"{c}-{i}" for i in range(len(texts))], "text": texts,
                                    "source": ["bench"] * len(texts), "split": ["train"] * len(texts)}))
    return out


def text_megabytes(corpus: Path) -> float:
    return sum(len(t.encode()) for batch in iter_texts(corpus) for t in batch) / 1e6


def time_ours(corpus: Path, tokenizer: Path, seq_len: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        pack_corpus(corpus, tokenizer, Path(out) / "shards", PackConfig(seq_len=seq_len), "bench")
        return time.perf_counter() - t0


def time_datasets(corpus: Path, tokenizer: Path, seq_len: int) -> float:
    """run_clm.py's recipe: load, map(tokenize, batched), map(group_texts, batched)."""
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(tokenizer)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        ds = datasets.load_dataset("parquet", data_files=[str(p) for p in sorted(corpus.glob("part-*.parquet"))],
                                   split="train", cache_dir=cache)

        def tokenize(batch):
            return tok([t + tok.eos_token for t in batch["text"]])

        def group_texts(batch):
            ids = [i for row in batch["input_ids"] for i in row]
            total = len(ids) // seq_len * seq_len
            return {"input_ids": [ids[i : i + seq_len] for i in range(0, total, seq_len)]}

        ds = ds.map(tokenize, batched=True, remove_columns=ds.column_names, num_proc=None)
        ds = ds.map(group_texts, batched=True, remove_columns=ds.column_names)
        len(ds)
        return time.perf_counter() - t0


def time_tiktoken(corpus: Path, tokenizer: Path) -> float | None:
    """tiktoken's raw encoder on our BPE (ranks only, no id mapping, no packing): the ceiling on this CPU."""
    from selfsup.tokens import load_tokenizer
    from selfsup.tokens.fast_encoder import encoder_threads, tiktoken_conversion

    try:
        import tiktoken
    except ImportError:
        return None
    conversion = tiktoken_conversion(json.loads(load_tokenizer(tokenizer).backend_tokenizer.to_str()))
    if isinstance(conversion, str):
        print(f"  (no tiktoken ceiling: {conversion})")
        return None
    enc = tiktoken.Encoding("ceiling", pat_str=conversion.pattern, mergeable_ranks=conversion.ranks, special_tokens={})
    texts = [t for batch in iter_texts(corpus) for t in batch]
    t0 = time.perf_counter()
    enc.encode_ordinary_batch(texts, num_threads=encoder_threads())
    return time.perf_counter() - t0


def encoder_engine(tokenizer: Path) -> str:
    from selfsup.tokens import load_tokenizer
    from selfsup.tokens.fast_encoder import fast_document_encoder

    encoder = fast_document_encoder(load_tokenizer(tokenizer))
    encoder.close()
    return encoder.engine if encoder.why is None else f"{encoder.engine} ({encoder.why})"


def child_peak_rss(corpus: Path, tokenizer: Path, seq_len: int) -> float:
    """Peak RSS (MB) of a fresh process that only runs our pack stage on `corpus`."""
    code = (
        "import sys, resource, tempfile; sys.path.insert(0, 'bench'); import common;"
        "from pathlib import Path; from selfsup.config import PackConfig; from selfsup.pack import pack_corpus;"
        f"d = tempfile.mkdtemp(); pack_corpus(Path({str(corpus)!r}), Path({str(tokenizer)!r}), Path(d) / 's',"
        f" PackConfig(seq_len={seq_len}, shard_tokens=1 << 22), 'bench');"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=None, help="alternating timings of each side, best kept [3]")
    args = parser.parse_args()
    data = prepared_data(seq_len=args.seq_len)
    small, large = (1, 10) if args.quick else (2, 20)
    corpus = scaled_corpus(data["corpus"], large)
    mb = text_megabytes(corpus)

    ours = baseline = ceiling = float("inf")
    for _ in range(args.repeat or 3):  # alternate, keep the best: shared machines are noisy
        ours = min(ours, time_ours(corpus, data["tokenizer"], args.seq_len))
        baseline = min(baseline, time_datasets(corpus, data["tokenizer"], args.seq_len))
        ceiling = min(ceiling, time_tiktoken(corpus, data["tokenizer"]) or float("inf"))
    ceiling = None if ceiling == float("inf") else ceiling
    rss_small = child_peak_rss(scaled_corpus(data["corpus"], small), data["tokenizer"], args.seq_len)
    rss_large = child_peak_rss(corpus, data["tokenizer"], args.seq_len)

    print(f"pack {mb:.1f} MB of text into {args.seq_len}-token blocks; our encoder: {encoder_engine(data['tokenizer'])}")
    print(f"  datasets.map + group_texts  {mb / baseline:8.2f} MB/s")
    print(f"  selfsup pack                {mb / ours:8.2f} MB/s  ({baseline / ours:.2f}x)")
    if ceiling:
        print(f"  tiktoken encode (ceiling)   {mb / ceiling:8.2f} MB/s  (ours = {ceiling / ours:.0%} of it)")
    print(f"  peak RSS of pack: {rss_small:.0f} MB at {mb * small / large:.0f} MB of text, {rss_large:.0f} MB at {mb:.0f} MB")
    emit({
        "bench": "pack_throughput", "mb": mb, "mb_per_s": {"ours": mb / ours, "datasets_map": mb / baseline,
                                                          "tiktoken": mb / ceiling if ceiling else None},
        "ratio": baseline / ours, "ratio_vs_tiktoken": (ceiling / ours) if ceiling else None,
        "peak_rss_mb": {"small": rss_small, "large": rss_large}, "rss_growth": rss_large / rss_small,
        "corpus_mb": {"small": mb * small / large, "large": mb},
    })


if __name__ == "__main__":
    main()
