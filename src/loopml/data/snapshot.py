"""Snapshots: frames as deterministic Parquet bytes, and content hashes for lineage.

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
>>> frame_to_parquet(frame) == frame_to_parquet(frame.copy())
True
>>> frame_from_parquet(frame_to_parquet(frame)).equals(frame)
True
>>> len(frame_hash(frame))
64
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from loopml.store import SnapshotRecord, Store

__all__ = ["file_hash", "frame_from_parquet", "frame_hash", "frame_to_parquet", "snapshot_frame"]

_COMPRESSION = "zstd"
_CHUNK = 1 << 20


def frame_to_parquet(df: pd.DataFrame) -> bytes:
    """Parquet bytes of ``df`` without its index; the same frame always gives the same bytes.

    The pandas metadata is kept (so dtypes such as category round-trip); it holds no timestamps.
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=_COMPRESSION, write_statistics=True)
    return sink.getvalue().to_pybytes()


def frame_from_parquet(data: bytes) -> pd.DataFrame:
    """The frame stored by :func:`frame_to_parquet`."""
    return pq.read_table(pa.BufferReader(data)).to_pandas()


def snapshot_frame(store: Store, snapshot: SnapshotRecord, *, max_rows: int | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """The rows of a stored snapshot, or a seeded sample of at most ``max_rows`` of them.

    A snapshot cleaned in partitions (larger than memory) is read part by part, and only the sampled
    rows of each part are kept, so a sample never needs the whole snapshot in memory.

    >>> snapshot_frame(store, store.snapshot(1), max_rows=2_000).shape  # doctest: +SKIP
    (2000, 17)
    """
    if snapshot.report.get("layout") != "parts":
        frame = frame_from_parquet(store.read_snapshot(snapshot))
        if max_rows is None or len(frame) <= max_rows:
            return frame
        take = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
        return frame.iloc[take].reset_index(drop=True)
    parts = store.snapshot_parts(snapshot)
    if max_rows is None:
        return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    rows = [pq.ParquetFile(p).metadata.num_rows for p in parts]
    total = sum(rows)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, min(max_rows, total), replace=False))
    starts = np.cumsum([0, *rows])
    pieces = []
    for i, path in enumerate(parts):
        mine = chosen[(chosen >= starts[i]) & (chosen < starts[i + 1])] - starts[i]
        if len(mine):
            pieces.append(pq.read_table(path).take(pa.array(mine)).to_pandas())
    return pd.concat(pieces, ignore_index=True)


def frame_hash(df: pd.DataFrame) -> str:
    """SHA-256 hex of the frame's content: column names, dtypes and values (the index is ignored)."""
    digest = hashlib.sha256()
    header = [[str(c), str(t)] for c, t in df.dtypes.items()]
    digest.update(json.dumps(header).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 hex of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
