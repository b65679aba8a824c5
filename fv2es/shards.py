"""The example shards: the one owner of the on-disk format ``fv2es preprocess`` writes and
training, evaluation and the report read.

Layout of a shards location (any fsspec URI)::

    examples/*.parquet   one row per utterance (schema: EXAMPLE_SCHEMA, then HCF_SCHEMA when written)
    metadata.json        emotion names, counts per split and class, failures, config, sizes

Every utterance the reader kept is a row; one that failed to decode keeps its ``status`` and
``error``, and readers skip it (``usable=True``), so counts in ``metadata.json`` always add up.
A new storage format for examples is a change to this module alone.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from fv2es.data.utterance import SPLITS
from fv2es.errors import InputError
from fv2es.failures import OK
from fv2es.storage import arrow_filesystem, options_for

# One row per utterance. Arrays travel as bytes plus a count (fv2es.pipeline.packing).
EXAMPLE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("split", pa.string()),  # train | valid | test
    ("labels", pa.list_(pa.string())),
    ("target", pa.list_(pa.float32())),  # multi-hot over metadata.json's emotions
    ("dataset", pa.string()),
    ("video_uri", pa.string()),
    ("start", pa.float64()),
    ("end", pa.float64()),
    ("text", pa.string()),
    ("faces", pa.binary()),  # uint8 (frames_sampled, 48, 48, 3)
    ("face_mask", pa.binary()),  # uint8 per frame: 1 = a face was found
    ("frames_sampled", pa.int32()),
    ("faces_found", pa.int32()),
    ("pieces", pa.binary()),  # float32 (piece_count, 4, 32, 32)
    ("piece_count", pa.int32()),
    ("has_video", pa.bool_()),
    ("has_audio", pa.bool_()),
    ("status", pa.string()),  # "ok", or the failure kind (fv2es.failures)
    ("error", pa.string()),
])
EXAMPLE_COLUMNS = EXAMPLE_SCHEMA.names
# Written after those only by `fv2es preprocess --hand-crafted` (data.hand_crafted): the seed's
# baselines' feature sequences, float32 (L, width) bytes (fv2es.models.handcrafted documents them).
HCF_SCHEMA = pa.schema([
    ("hcf_text", pa.binary()),  # (tokens, 384)
    ("hcf_audio", pa.binary()),  # (frames, 88)
    ("hcf_visual", pa.binary()),  # (face frames, 140)
])
HCF_COLUMNS = HCF_SCHEMA.names
# What the model needs of an example (fv2es.train.data.ExampleCollate), plus the target.
MODEL_COLUMNS = ["text", "faces", "pieces", "target"]
EXAMPLES = "examples"
METADATA = "metadata.json"


class ExampleShards:
    """One shards location: write the examples and ``metadata.json``, read a split of them (as a
    pyarrow Table or a Ray Dataset), and read the metadata back."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri.rstrip("/")
        self.storage_options = storage_options
        self.fs, self.root = url_to_fs(self.uri, **options_for(self.uri, storage_options))

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    # --- writing --------------------------------------------------------------------------------

    def write_examples(self, ds) -> None:
        """Write a Ray Dataset of example rows as ``examples/*.parquet``, replacing earlier shards
        (a rerun replaces, never mixes, shards)."""
        if self.fs.exists(self._path(EXAMPLES)):
            self.fs.rm(self._path(EXAMPLES), recursive=True)
        fs, root = arrow_filesystem(self.uri, self.storage_options)
        ds.write_parquet(posixpath.join(root, EXAMPLES), filesystem=fs)

    def write_table(self, table: pa.Table) -> None:
        """Write example rows held in memory as ``examples/part-00000.parquet``, replacing earlier shards."""
        if self.fs.exists(self._path(EXAMPLES)):
            self.fs.rm(self._path(EXAMPLES), recursive=True)
        self.fs.makedirs(self._path(EXAMPLES), exist_ok=True)
        with self.fs.open(self._path(EXAMPLES, "part-00000.parquet"), "wb") as f:
            pq.write_table(table, f)

    def write_metadata(self, meta: dict) -> None:
        """Write ``metadata.json`` (written last: its presence marks a finished preprocess)."""
        with self.fs.open(self._path(METADATA), "w") as f:
            json.dump(meta, f, indent=2)

    # --- reading --------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether a finished preprocess output is here (its ``metadata.json``)."""
        return self.fs.exists(self._path(METADATA))

    def metadata(self) -> dict:
        """``metadata.json`` as a dict; :class:`InputError` when this is not a preprocess output."""
        if not self.exists():
            raise InputError(f"{self.uri}: no metadata.json; is this an `fv2es preprocess` output?")
        with self.fs.open(self._path(METADATA)) as f:
            return json.load(f)

    def files(self) -> list[str]:
        """The Parquet files under ``examples/``, sorted."""
        folder = self._path(EXAMPLES)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.find(folder) if p.endswith(".parquet"))

    def shard_bytes(self) -> int:
        """Bytes of all example files together."""
        return sum(self.fs.size(p) for p in self.files())

    def read(self, columns: Sequence[str] | None = None, split: str | None = None,
             usable: bool = False) -> pa.Table:
        """Example rows as one table: only ``split``'s rows when given, only usable (status ok)
        rows with ``usable``; ``columns`` (default: all) in the given order."""
        files = self.files()
        if not files:
            raise InputError(f"{self.uri}: no examples/*.parquet; is this an `fv2es preprocess` output?")
        wanted = None if columns is None else list(dict.fromkeys([*columns, "split", "status"]))
        tables = []
        for path in files:
            with self.fs.open(path, "rb") as f:
                tables.append(pq.read_table(f, columns=wanted))
        table = pa.concat_tables(tables)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        if usable:
            table = table.filter(pc.equal(table["status"], OK))
        return table if columns is None else table.select(list(columns))

    def dataset(self, split: str, columns: Sequence[str]):
        """A Ray Dataset of ``split``'s usable rows, read lazily in parallel: ``columns`` plus the
        ``split`` and ``status`` the filter reads."""
        import ray

        fs, root = arrow_filesystem(self.uri, self.storage_options)
        wanted = list(dict.fromkeys([*columns, "split", "status"]))
        ds = ray.data.read_parquet(posixpath.join(root, EXAMPLES), filesystem=fs, columns=wanted)
        return ds.filter(expr=f"status == '{OK}'").filter(expr=f"split == '{split}'")

    def counts(self, emotions: Sequence[str]) -> dict:
        """The counts ``metadata.json`` records of the written examples: rows per status, usable
        rows per split, usable rows per split and emotion, utterance seconds and shard bytes."""
        table = self.read(["split", "labels", "status", "start", "end"])
        status = table["status"].to_pylist()
        splits = table["split"].to_pylist()
        labels = table["labels"].to_pylist()
        ok = [s == OK for s in status]
        seconds = float(np.nansum(np.asarray(table["end"].to_pylist(), dtype=float)
                                  - np.asarray(table["start"].to_pylist(), dtype=float)))
        shard_bytes = self.shard_bytes()
        return {
            "rows": {"total": len(status), "ok": sum(ok), **{f"status_{k}": v for k, v in Counter(status).items()}},
            "split_rows": {s: sum(1 for o, x in zip(ok, splits) if o and x == s) for s in SPLITS},
            "class_counts": {s: {e: sum(1 for o, x, ls in zip(ok, splits, labels) if o and x == s and e in ls)
                                 for e in emotions} for s in SPLITS},
            "utterance_seconds": seconds,
            "shard_bytes": shard_bytes,
            "shard_bytes_per_utterance_second": shard_bytes / seconds if seconds else float("nan"),
        }


def as_examples(table: pa.Table) -> pa.Table:
    """``table`` (rows with at least the example columns) as example rows: the schema's columns,
    in its order, with its types; then the hand-crafted ones (:data:`HCF_COLUMNS`) when it has them."""
    if all(c in table.column_names for c in HCF_COLUMNS):
        return table.select(EXAMPLE_COLUMNS + HCF_COLUMNS).cast(pa.unify_schemas([EXAMPLE_SCHEMA, HCF_SCHEMA]))
    return table.select(EXAMPLE_COLUMNS).cast(EXAMPLE_SCHEMA)


def model_columns(config) -> list[str]:
    """The columns a model of ``config`` (a ModelConfig) reads of an example, with the target:
    :data:`MODEL_COLUMNS`, or for the seed's baselines their features (:data:`HCF_COLUMNS`)."""
    return [*HCF_COLUMNS, "target"] if config.hand_crafted else MODEL_COLUMNS


def table_batches(table: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    """``table`` in consecutive slices of ``batch_size`` rows (the last may be shorter)."""
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)
