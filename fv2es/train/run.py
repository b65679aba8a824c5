"""A training run folder: the one owner of its layout, written by the training job and read by
the report.

Layout of ``<output>/<name>/`` (any fsspec URI)::

    checkpoint_epoch_NNN/   Ray Train's checkpoints: model.safetensors, train_state.pt, state.json
                            (the best and the last epoch's by default: train.keep_checkpoints)
    checkpoint_manager_snapshot.json   Ray Train's list of them (it restores the latest)
    metrics.jsonl           one JSON object per epoch (train_*, valid_*, test_* keys, thresholds)
    metrics.parquet         the same rows as a table (without the thresholds)
    best.safetensors        the checkpoint of the best validation average F1: the one ``score`` uses
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from fv2es.errors import CheckpointError
from fv2es.storage import options_for

log = logging.getLogger(__name__)

BEST = "best.safetensors"
METRICS = "metrics.jsonl"
EPOCH_PREFIX = "checkpoint_epoch_"
# Ray Train's record of the run's checkpoints (Ray restores the latest one it lists); only the
# checkpoint folder names in it are read here, so its format may change freely.
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"


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
        """``best.safetensors``; for a run still training (no such file yet), the best epoch's
        checkpoint: the one the last checkpoint's state names (Ray Train has kept that folder), else
        ``best_epoch``."""
        if best_epoch is not None and not self.fs.exists(self._path(BEST)):
            state = self.last_state() if self.checkpoint_names() else {}
            if state.get("best_epoch") is not None:
                best_epoch = state["best_epoch"]
            return self.checkpoint_uri(best_epoch)
        return f"{self.uri}/{BEST}"

    def checkpoint_names(self) -> list[str]:
        """The ``checkpoint_epoch_NNN`` folders of the run, oldest first ([] for a new run)."""
        if not self.fs.isdir(self.root):
            return []
        return sorted(name for name in (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
                      if name.startswith(EPOCH_PREFIX) and self.fs.isdir(self._path(name)))

    def last_state(self) -> dict:
        """The training state (epoch rows, best epoch) saved with the last checkpoint."""
        with self.fs.open(self._path(self.checkpoint_names()[-1], "state.json")) as f:
            return json.load(f)

    def broken(self, name: str) -> str | None:
        """Why checkpoint folder ``name`` cannot be resumed from (a missing or truncated file), or
        None when it is intact: a complete ``model.safetensors``, a readable ``train_state.pt``
        (a zip archive: a truncated one has no central directory) and ``state.json``."""
        from fv2es.models.checkpoint import read_checkpoint_info

        try:
            read_checkpoint_info(f"{self.uri}/{name}/model.safetensors", self.fs.storage_options)
            with self.fs.open(self._path(name, "train_state.pt"), "rb") as f, zipfile.ZipFile(f) as archive:
                archive.namelist()
            with self.fs.open(self._path(name, "state.json"), "r") as f:
                json.load(f)
        except (CheckpointError, zipfile.BadZipFile, json.JSONDecodeError, FileNotFoundError) as exc:
            message = str(exc)
            for prefix in dict.fromkeys([self._local_uri(), self.uri]):  # paths said relative to the run
                message = message.replace(prefix + "/", "")
            return message or type(exc).__name__
        return None

    def _local_uri(self) -> str:
        """The run's URI, absolute when it is a local path (as checkpoint readers report it)."""
        return self.uri if "://" in self.uri else os.path.abspath(self.uri)

    def prepare_resume(self) -> str | None:
        """Before continuing a run: check its checkpoints. Returns None when Ray Train can restore
        the last one itself (or there is none: a new run). When the last one is missing, truncated
        or unreadable (a crash while it was written, a folder deleted by hand), logs so, removes
        the broken folders and Ray's record of them, and returns the URI of the newest intact
        checkpoint folder, for the training loop to go on from.

        Raises:
            CheckpointError: checkpoints were written but none is intact.
        """
        names = self.checkpoint_names()
        snapshot = self._path(RAY_SNAPSHOT)
        listed: set[str] | None = None
        if self.fs.exists(snapshot):
            with self.fs.open(snapshot, "r") as f:
                text = f.read()
            try:
                json.loads(text)
                listed = set(re.findall(EPOCH_PREFIX + r"\d+", text))
            except json.JSONDecodeError:
                listed = None  # a snapshot cut short: Ray cannot read it either
        if not names and listed is not None and not listed:
            return None
        if not names and not self.fs.exists(snapshot):
            return None
        problems = {name: f"{name} is missing" for name in sorted((listed or set()) - set(names))}
        if names and (why := self.broken(names[-1])):
            problems[names[-1]] = f"{names[-1]} is broken ({why})"
        if listed is None:
            problems[RAY_SNAPSHOT] = f"Ray Train's {RAY_SNAPSHOT} is missing or unreadable"
        if not problems:
            return None
        intact = [name for name in names if not self.broken(name)]
        if not intact:
            raise CheckpointError(f"{self.uri}: no intact checkpoint to continue from "
                                  f"({'; '.join(problems.values())}); start a new run (another --name)")
        for name in names:
            if name not in intact:
                self.fs.rm(self._path(name), recursive=True)
        if self.fs.exists(snapshot):
            self.fs.rm(snapshot)
        log.warning(f"{self.uri}: {'; '.join(problems.values())}: continuing from {intact[-1]}, the newest "
                    "intact checkpoint")
        return f"{self._local_uri()}/{intact[-1]}"  # absolute: the training workers run in other folders

    def write_checkpoint(self, name: str, folder: str) -> None:
        """Copy the files of local ``folder`` into the run's checkpoint folder ``name`` (what Ray
        Train does with a reported checkpoint; :class:`fv2es.train.local.LocalWorker` without it)."""
        self.fs.makedirs(self._path(name), exist_ok=True)
        for file in sorted(os.listdir(folder)):
            self.fs.put_file(os.path.join(folder, file), self._path(name, file))

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
