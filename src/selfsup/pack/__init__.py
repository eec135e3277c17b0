"""Pack stage: corpus + tokenizer → fixed-length token blocks in memory-mappable .npy shards."""

from selfsup.pack.pack import pack_corpus, token_dtype
from selfsup.pack.pieces import default_pieces_dir, merge_pieces, pack_piece, parse_shard
from selfsup.pack.shards import TokenShards

__all__ = ["TokenShards", "default_pieces_dir", "merge_pieces", "pack_corpus", "pack_piece", "parse_shard", "token_dtype"]
