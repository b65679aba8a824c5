"""Preprocessing: a raw dataset -> Parquet example shards, with the scoring job's media stages.

Output layout (any fsspec URI)::

    examples/*.parquet   one row per utterance (schema: EXAMPLE_COLUMNS)
    metadata.json        emotion names, counts per split and class, failures, config, sizes

Every utterance the reader kept becomes a row; one that fails to decode keeps its status and
error (training skips it), so counts always add up.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

import fv2es
from fv2es.config import Config, to_dict
from fv2es.data.splits import assign_random_splits, assign_split_lists, read_split_lists
from fv2es.data.utterance import ReadStats, Utterance
from fv2es.emotions import IEMOCAP_EMOTIONS, MOSEI_EMOTIONS
from fv2es.pipeline.dataset import init_ray, media_dataset
from fv2es.pipeline.plan import jobs_from_utterances
from fv2es.storage import arrow_filesystem, options_for

EXAMPLE_COLUMNS = [
    "id", "split", "labels", "target", "dataset", "video_uri", "start", "end", "text",
    "faces", "face_mask", "frames_sampled", "faces_found", "pieces", "piece_count",
    "has_video", "has_audio", "status", "error",
]


@dataclass
class PreprocessRequest:
    dataset: str  # iemocap | mosei | manifest
    input_uri: str  # dataset root (iemocap, mosei) or manifest file
    output_uri: str
    labels_uri: str | None = None  # MOSEI labels (CSV or .csd), when not in the default place
    split_lists: dict[str, str] | None = None  # {"train": uri, "valid": uri, "test": uri}
    storage_options: dict | None = None
    address: str | None = None


def read_dataset(req: PreprocessRequest, cfg: Config) -> tuple[list[Utterance], tuple[str, ...], ReadStats | None]:
    """Utterances, their emotion names, and the reader's counts of what it dropped."""
    options = options_for(req.input_uri, req.storage_options)
    if req.dataset == "iemocap":
        from fv2es.data.iemocap import read_iemocap

        utterances, stats = read_iemocap(req.input_uri, storage_options=options)
        return utterances, IEMOCAP_EMOTIONS, stats
    if req.dataset == "mosei":
        from fv2es.data.mosei import read_mosei

        utterances, stats = read_mosei(req.input_uri, labels_uri=req.labels_uri, storage_options=options)
        return utterances, MOSEI_EMOTIONS, stats
    from fv2es.data.manifest import read_manifest

    emotions = cfg.model.emotions
    return read_manifest(req.input_uri, emotions=emotions, storage_options=options), emotions, None


def assign_splits(utterances: list[Utterance], req: PreprocessRequest, cfg: Config) -> list[Utterance]:
    """Given split lists, else the manifest's own splits when every row has one, else seeded random."""
    if req.split_lists:
        return assign_split_lists(utterances, read_split_lists(req.split_lists)).utterances
    if utterances and all(u.split for u in utterances):
        return utterances
    return assign_random_splits(utterances, cfg.data.split_ratios, seed=cfg.data.split_seed)


class ToExample:
    """Segment rows -> example rows: the utterance's id, split, labels and multi-hot target."""

    def __init__(self, labels: dict[str, tuple], emotions: tuple[str, ...], dataset: str):
        self.labels, self.emotions, self.dataset = labels, list(emotions), dataset

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("utterance_id").to_pylist()
        info = [self.labels[i] for i in ids]
        targets = [[1.0 if e in labels else 0.0 for e in self.emotions] for labels, _ in info]
        table = batch.rename_columns(["id" if c == "utterance_id" else c for c in batch.column_names])
        table = table.append_column("split", pa.array([s for _, s in info], pa.string()))
        table = table.append_column("labels", pa.array([list(labels) for labels, _ in info], pa.list_(pa.string())))
        table = table.append_column("target", pa.array(targets, pa.list_(pa.float32())))
        table = table.append_column("dataset", pa.array([self.dataset] * len(ids), pa.string()))
        return table.select(EXAMPLE_COLUMNS)


def run_preprocess(cfg: Config, req: PreprocessRequest, out=None) -> dict:
    """Read, split, decode, crop and write the shards; returns (and writes) the metadata."""
    started = time.time()
    utterances, emotions, stats = read_dataset(req, cfg)
    if not utterances:
        raise ValueError(f"{req.input_uri}: the {req.dataset} reader found no utterances")
    utterances = assign_splits(utterances, req, cfg)
    labels = {u.id: (u.labels, u.split) for u in utterances}
    jobs = jobs_from_utterances(utterances)
    # An utterance is one example however long: no windowing, and chunks bound decode memory.
    plan = dataclasses.replace(cfg.score, segments="whole", max_segment_s=1e9)
    options = options_for(req.input_uri, req.storage_options)
    print(f"preprocessing {len(utterances)} utterances of {len(jobs)} videos -> {req.output_uri}", file=out)

    init_ray(req.address)
    ds = media_dataset(jobs, cfg, plan, options)
    ds = ds.map_batches(ToExample(labels, emotions, req.dataset), batch_format="pyarrow", num_cpus=0.25)
    fs, root = arrow_filesystem(req.output_uri, req.storage_options)
    out_fs, out_root = url_to_fs(req.output_uri, **options_for(req.output_uri, req.storage_options))
    if out_fs.exists(f"{out_root}/examples"):
        out_fs.rm(f"{out_root}/examples", recursive=True)  # a rerun replaces, never mixes, shards
    ds.write_parquet(f"{root}/examples", filesystem=fs)

    meta = summarize(req, cfg, emotions, stats, out_fs, out_root)
    meta["wall_s"] = round(time.time() - started, 1)
    with out_fs.open(f"{out_root}/metadata.json", "w") as f:
        json.dump(meta, f, indent=2)
    rows = meta["rows"]
    print(f"wrote {rows['total']} examples ({rows['ok']} ok, {rows['total'] - rows['ok']} failed) in "
          f"{meta['wall_s']} s; {meta['shard_bytes_per_utterance_second']:.0f} bytes per utterance-second", file=out)
    if rows["total"] != len(utterances):
        raise RuntimeError(f"{len(utterances)} utterances in but {rows['total']} examples out")
    return meta


def read_examples(uri: str, storage_options: dict | None = None, columns: list[str] | None = None) -> pa.Table:
    """All example rows under ``uri`` (a preprocess output) as one table."""
    fs, root = url_to_fs(uri, **options_for(uri, storage_options))
    files = sorted(p for p in fs.find(f"{root}/examples") if p.endswith(".parquet"))
    tables = []
    for path in files:
        with fs.open(path, "rb") as f:
            tables.append(pq.read_table(f, columns=columns))
    return pa.concat_tables(tables)


def summarize(req, cfg: Config, emotions, stats, fs, root) -> dict:
    table = read_examples(req.output_uri, req.storage_options,
                          columns=["split", "labels", "status", "start", "end"])
    status = table.column("status").to_pylist()
    splits = table.column("split").to_pylist()
    labels = table.column("labels").to_pylist()
    ok = [s == "ok" for s in status]
    per_split = {
        split: {e: sum(1 for o, s, ls in zip(ok, splits, labels) if o and s == split and e in ls) for e in emotions}
        for split in ("train", "valid", "test")
    }
    seconds = float(np.nansum(np.asarray(table.column("end").to_pylist(), dtype=float)
                              - np.asarray(table.column("start").to_pylist(), dtype=float)))
    shard_bytes = sum(fs.size(p) for p in fs.find(f"{root}/examples") if p.endswith(".parquet"))
    return {
        "fv2es_version": fv2es.__version__,
        "dataset": req.dataset,
        "source": req.input_uri,
        "emotions": list(emotions),
        "rows": {"total": len(status), "ok": sum(ok), **{f"status_{k}": v for k, v in Counter(status).items()}},
        "split_rows": {s: sum(1 for o, x in zip(ok, splits) if o and x == s) for s in ("train", "valid", "test")},
        "class_counts": per_split,
        "reader": dataclasses.asdict(stats) if stats is not None else None,
        "config": {k: to_dict(getattr(cfg, k)) for k in ("decode", "faces", "spectrogram", "data")},
        "utterance_seconds": seconds,
        "shard_bytes": shard_bytes,
        "shard_bytes_per_utterance_second": shard_bytes / seconds if seconds else float("nan"),
    }
