"""Preprocessing: a raw dataset -> example shards (:mod:`fv2es.shards`), with the scoring job's
media stages.

Every utterance the reader kept becomes a row; one that fails to decode keeps its status and
error (training skips it), so counts always add up.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import fv2es
from fv2es.config import Config, to_dict
from fv2es.data.splits import assign_random_splits, assign_split_lists, read_split_lists
from fv2es.data.utterance import ReadStats, Utterance
from fv2es.emotions import IEMOCAP_EMOTIONS, MOSEI_EMOTIONS
from fv2es.errors import InputError
from fv2es.pipeline.dataset import check_speech_model, init_ray, media_dataset, media_job, sized_config
from fv2es.pipeline.plan import jobs_from_utterances
from fv2es.pipeline.stages.transcribe import asr_summary
from fv2es.progress import Progress
from fv2es.shards import EXAMPLE_SCHEMA, HCF_SCHEMA, ExampleShards, as_examples
from fv2es.storage import options_for, redact_uri

log = logging.getLogger(__name__)


@dataclass
class PreprocessRequest:
    """What to read (dataset kind, input, optional labels and split lists) and where to write."""

    dataset: str  # iemocap | mosei | manifest | iemocap-hcf | mosei-hcf (MESM's feature release)
    input_uri: str  # dataset root (iemocap, mosei), manifest file, or MESM's data folder (*-hcf)
    output_uri: str
    labels_uri: str | None = None  # MOSEI labels (CSV or .csd), when not in the default place
    split_lists: dict[str, str] | None = None  # {"train": uri, "valid": uri, "test": uri}
    storage_options: dict | None = None
    address: str | None = None
    audio_feature_type: int = 0  # -aft: MESM's IEMOCAP audio column set (iemocap-hcf)


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
        return as_examples(table)


def hand_crafted_summary(cfg: Config) -> dict | None:
    """What ``metadata.json`` says of the baselines' features (None: not written): their widths,
    columns and encoders (:mod:`fv2es.models.handcrafted` documents each dimension)."""
    if not cfg.data.hand_crafted:
        return None
    from fv2es.models.handcrafted import HFC_SIZES, TEXT_MAX_LEN, TEXT_MODEL
    from fv2es.shards import HCF_COLUMNS

    return {"sizes": list(HFC_SIZES), "columns": HCF_COLUMNS, "text_model": TEXT_MODEL, "text_max_len": TEXT_MAX_LEN,
            "visual_model": "fer2013 mini-xception (packaged)", "audio_frames_per_s": cfg.spectrogram.sample_rate
            / cfg.spectrogram.hop_length}


def run_preprocess(cfg: Config, req: PreprocessRequest) -> dict:
    """Read, split, decode, crop and write the shards; returns (and writes) the metadata."""
    if req.dataset.endswith("-hcf"):
        return import_mesm(req)
    started = time.time()
    utterances, emotions, stats = read_dataset(req, cfg)
    if not utterances:
        raise InputError(f"{req.input_uri}: the {req.dataset} reader found no utterances")
    utterances = assign_splits(utterances, req, cfg)
    labels = {u.id: (u.labels, u.split) for u in utterances}
    jobs = jobs_from_utterances(utterances)
    # An utterance is one example however long: no windowing, and chunks bound decode memory.
    plan = dataclasses.replace(cfg.segments, mode="whole", max_segment_s=1e9)
    options = options_for(req.input_uri, req.storage_options)
    check_speech_model(cfg, req.storage_options)  # rows without text are transcribed: fail now, not per video
    log.info(f"preprocessing {len(utterances)} utterances of {len(jobs)} videos -> {req.output_uri}")

    init_ray(req.address)
    cfg = sized_config(cfg, model=False)  # resources sized once for the job
    ds = media_dataset(jobs, media_job(cfg, plan, options, req.storage_options))
    ds = ds.map_batches(ToExample(labels, emotions, req.dataset), batch_format="pyarrow", num_cpus=0.25)
    shards = ExampleShards(req.output_uri, req.storage_options)
    with Progress("preprocess", len(utterances), "utterances").watch(ds) as counted:
        shards.write_examples(counted)

    counts = shards.counts(emotions)
    meta = {
        "fv2es_version": fv2es.__version__,
        "dataset": req.dataset,
        "source": redact_uri(req.input_uri),
        "emotions": list(emotions),
        **{k: counts.pop(k) for k in ("rows", "split_rows", "class_counts")},
        "reader": dataclasses.asdict(stats) if stats is not None else None,
        "config": {k: to_dict(getattr(cfg, k)) for k in ("decode", "faces", "spectrogram", "data")},
        **counts,  # seconds and sizes
        "asr": asr_summary(cfg.asr, utterances, shards.read(columns=["id", "text"])),
        "hand_crafted": hand_crafted_summary(cfg),
    }
    meta["wall_s"] = round(time.time() - started, 1)
    shards.write_metadata(meta)
    rows = meta["rows"]
    log.info(f"wrote {rows['total']} examples ({rows['ok']} ok, {rows['total'] - rows['ok']} failed) in "
             f"{meta['wall_s']} s; {meta['shard_bytes_per_utterance_second']:.0f} bytes per utterance-second")
    if rows["total"] != len(utterances):
        raise RuntimeError(f"{len(utterances)} utterances in but {rows['total']} examples out")
    return meta


def import_mesm(req: PreprocessRequest) -> dict:
    """MESM's processed release (``--dataset iemocap-hcf|mosei-hcf``, ``req.input_uri`` its data
    folder) -> example shards holding its hand-crafted features (:func:`fv2es.data.hcf.read_mesm_examples`:
    the seed's split lists, labels and feature columns) and no media, for the seed's baselines
    (``-hfcs`` = the widths in ``metadata.json``). No Ray: the files are read here."""
    from fv2es.data.hcf import read_mesm_examples
    from fv2es.shards import HCF_COLUMNS

    started = time.time()
    dataset = req.dataset.removesuffix("-hcf")
    emotions = IEMOCAP_EMOTIONS if dataset == "iemocap" else MOSEI_EMOTIONS
    examples = read_mesm_examples(req.input_uri, dataset, emotions, req.audio_feature_type,
                                  options_for(req.input_uri, req.storage_options))
    if not examples:
        raise InputError(f"{req.input_uri}: MESM's split lists name no utterances")
    sizes = [int(examples[0].features.text.shape[1]), int(examples[0].features.audio.shape[1]),
             int(examples[0].features.visual.shape[1])]
    rows = [{"id": x.id, "split": x.split, "labels": list(x.labels), "target": [float(e in x.labels) for e in emotions],
             "dataset": dataset, "text": x.text, "faces": b"", "face_mask": b"", "frames_sampled": 0, "faces_found": 0,
             "pieces": b"", "piece_count": 0, "has_video": False, "has_audio": False, "status": "ok", "error": "",
             **dict(zip(HCF_COLUMNS, (np.ascontiguousarray(a, np.float32).tobytes() for a in
                                      (x.features.text, x.features.audio, x.features.visual))))} for x in examples]
    for x in examples:
        got = [x.features.text.shape[1], x.features.audio.shape[1], x.features.visual.shape[1]]
        if got != sizes:
            raise InputError(f"{req.input_uri}: {x.id}'s features are {got} wide, the first utterance's {sizes}")
    table = pa.Table.from_pylist(rows, schema=pa.unify_schemas([EXAMPLE_SCHEMA, HCF_SCHEMA]))
    shards = ExampleShards(req.output_uri, req.storage_options)
    shards.write_table(as_examples(table))
    counts = shards.counts(emotions)
    meta = {"fv2es_version": fv2es.__version__, "dataset": dataset, "source": redact_uri(req.input_uri),
            "emotions": list(emotions), **{k: counts.pop(k) for k in ("rows", "split_rows", "class_counts")},
            "reader": None, "config": None, **counts, "asr": None,
            "hand_crafted": {"sizes": sizes, "columns": HCF_COLUMNS, "source": "MESM's processed release",
                             "audio_feature_type": req.audio_feature_type if dataset == "iemocap" else None},
            "wall_s": round(time.time() - started, 1)}
    shards.write_metadata(meta)
    log.info(f"imported {len(rows)} utterances of MESM's {dataset} features ({' '.join(map(str, sizes))} wide: "
             f"give -hfcs {' '.join(map(str, sizes))}) -> {req.output_uri}")
    return meta
