"""Descriptor retrieval: ScaNN (default) and exact JAX search, sharding, metadata.

Public API::

    Index(dim, backend="scann" | "exact", metric="dot")
        .add(ids, vectors, paths=None, sha256s=None) -> AddResult(added, duplicates)
        .search(queries, k) -> (scores [Q, k], ids [Q, k])
        .save(dir); Index.load(dir, verify=True)
        .lookup(id) -> {"id", "path", "sha256", "added_at", "removed_at"}; .find_sha256(sha)
        .remove(ids) (tombstones); .relink(ids, paths); .compact() -> Index without tombstones
    ShardedIndex(shards).search(queries, k); ShardedIndex.load(dir)
    write_vector_shard / build_shard_index for the multi-host flow (see sharded.py).
"""

from provjax.retrieval.index import AddResult, Index, IndexCorruptError
from provjax.retrieval.metadata import sha256_file
from provjax.retrieval.scann_backend import scann_params
from provjax.retrieval.sharded import (
    ShardedIndex,
    build_shard_index,
    files_for_process,
    read_vector_shard,
    write_vector_shard,
)

__all__ = [
    "AddResult",
    "Index",
    "IndexCorruptError",
    "ShardedIndex",
    "build_shard_index",
    "files_for_process",
    "read_vector_shard",
    "scann_params",
    "sha256_file",
    "write_vector_shard",
]
