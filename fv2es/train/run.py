"""A training run folder: the one owner of its layout, written by the training job and read by
the report.

Layout of ``<output>/<name>/`` (any fsspec URI)::

    checkpoint_epoch_NNN/   Ray Train's checkpoints: model.safetensors, train_state.pt, state.json
    metrics.jsonl           one JSON object per epoch (train_*, valid_*, test_* keys, thresholds)
    metrics.parquet         the same rows as a table (without the thresholds)
    best.safetensors        the checkpoint of the best validation average F1: the one ``score`` uses
"""

from __future__ import annotations

import json
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from fv2es.storage import options_for

BEST = "best.safetensors"
METRICS = "metrics.jsonl"


class RunFolder:
    """One run folder: its metrics, checkpoints and best checkpoint."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri = uri.rstrip("/")
        self.fs, root = url_to_fs(self.uri, **options_for(self.uri, storage_options))
        self.root = root.rstrip("/")

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def checkpoint_uri(self, epoch: int) -> str:
        """The URI of an epoch's model checkpoint."""
        return f"{self.uri}/checkpoint_epoch_{epoch:03d}/model.safetensors"

    def best_uri(self, best_epoch: int | None = None) -> str:
        """``best.safetensors``; for a run still training (no such file yet), ``best_epoch``'s checkpoint."""
        if best_epoch is not None and not self.fs.exists(self._path(BEST)):
            return self.checkpoint_uri(best_epoch)
        return f"{self.uri}/{BEST}"

    def last_state(self) -> dict:
        """The training state (epoch rows, best epoch) saved with the last checkpoint."""
        last = sorted(p for p in self.fs.ls(self.root, detail=False)
                      if p.rsplit("/", 1)[-1].startswith("checkpoint_epoch_"))[-1]
        with self.fs.open(f"{last}/state.json") as f:
            return json.load(f)

    def finish(self, rows: list[dict], best_epoch: int) -> str:
        """Write the metrics tables and copy the best epoch's checkpoint to ``best.safetensors``;
        returns the latter's URI."""
        with self.fs.open(self._path(METRICS), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with self.fs.open(self._path("metrics.parquet"), "wb") as f:
            pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "thresholds"} for r in rows]), f)
        self.fs.copy(self._path(f"checkpoint_epoch_{best_epoch:03d}", "model.safetensors"), self._path(BEST))
        return f"{self.uri}/{BEST}"

    def metrics(self) -> list[dict]:
        """The epoch rows of ``metrics.jsonl``, one per epoch in order (a resumed run may repeat an
        epoch: the last one counts)."""
        path = self._path(METRICS)
        if not self.fs.exists(path):
            raise FileNotFoundError(f"{self.uri}: no {METRICS}; is this an `fv2es train` run folder?")
        with self.fs.open(path, "r") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        by_epoch = {r["epoch"]: r for r in rows}
        return [by_epoch[e] for e in sorted(by_epoch)]
