"""The scoring job: list -> the media stages (decode, transcribe, spectrogram, faces) -> model actors
-> Parquet, on Ray Data."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import fv2es
from fv2es.config import Config
from fv2es.models import read_checkpoint_info
from fv2es.pipeline.dataset import StageSpec, build_dataset, check_speech_model, init_ray, media_stages
from fv2es.pipeline.plan import list_jobs
from fv2es.pipeline.stages import SpeechNumbering
from fv2es.score.model_stage import ModelStage, prob_column
from fv2es.score.sink import ScoreOutput, VideoCollector, summarize_videos
from fv2es.storage import options_for, redact_uri

log = logging.getLogger(__name__)


def segment_columns(emotions) -> list[str]:
    """The columns of the per-segment table, in order (the README documents each)."""
    return [
        "video_uri", "segment_index", "segment_count", "utterance_id", "start", "end", "video_duration_s",
        "text", "text_source", "language", "asr_confidence", "speaker_side", "frames_sampled", "faces_found",
        "piece_count", "has_video", "has_audio", *[prob_column(e) for e in emotions], "top_emotion", "predicted",
        "model_id", "status", "error", "decode_ms", "asr_ms", "face_ms", "model_ms",
    ]


@dataclass
class ScoreRequest:
    """What to score, where to write, with which checkpoint."""

    input_uri: str
    output_uri: str
    checkpoint_uri: str
    storage_options: dict | None = None  # for s3:// (and other remote) URIs
    address: str | None = None  # Ray address; None: RAY_ADDRESS or an embedded local Ray


def run_score(cfg: Config, req: ScoreRequest) -> dict:
    """Score every input not yet in the output; returns the counts written to ``_SUCCESS``."""
    started = time.time()
    info = read_checkpoint_info(req.checkpoint_uri, options_for(req.checkpoint_uri, req.storage_options))
    check_speech_model(cfg, req.storage_options)  # before any video is read
    emotions = list(info.config.emotions)
    metadata = {
        "fv2es.version": fv2es.__version__,
        "fv2es.emotions": json.dumps(emotions),
        "fv2es.model_id": info.model_id,
        "fv2es.checkpoint": redact_uri(req.checkpoint_uri),  # a presigned URL's signature is a secret
        "fv2es.thresholds": json.dumps(info.thresholds),
        "fv2es.config": json.dumps(cfg.to_dict()),
        "fv2es.config_digest": cfg.digest(),
    }
    output = ScoreOutput(req.output_uri, options_for(req.output_uri, req.storage_options), metadata)
    jobs = list_jobs(req.input_uri, cfg.score, options_for(req.input_uri, req.storage_options))
    done = output.done_jobs()
    todo = [j for j in jobs if (j["video_uri"], j["speaker_side"]) not in done]
    if not todo and output.is_complete():
        counts = output.success()
        log.info(f"{redact_uri(req.output_uri)} is already complete: {counts['videos']} videos "
                 f"({counts['videos_ok']} ok, {counts['videos_failed']} failed)")
        return counts
    log.info(f"scoring {len(todo)} of {len(jobs)} videos ({len(jobs) - len(todo)} already done) with model {info.model_id} "
             f"-> {redact_uri(req.output_uri)}")
    output.start()
    collector = VideoCollector(output, segment_columns(emotions), cfg.score.part_videos)
    held = _stream(cfg, req, todo, collector) if todo else []
    collector.flush()
    missing = {**collector.incomplete(), **dict.fromkeys(held, 0)}
    if missing:
        raise RuntimeError(f"rows missing for {len(missing)} videos (e.g. {next(iter(missing))}); output left incomplete")

    segments = output.read_segments()
    videos = summarize_videos(segments, emotions)
    statuses = videos.column("status").to_pylist()
    counts = {
        "inputs": len({j["video_uri"] for j in jobs}),
        "videos": videos.num_rows,
        "videos_ok": sum(s == "ok" for s in statuses),
        "videos_failed": sum(s != "ok" for s in statuses),
        "segments": segments.num_rows,
        "segments_ok": sum(s == "ok" for s in segments.column("status").to_pylist()),
        "model_id": info.model_id,
        "fv2es_version": fv2es.__version__,
    }
    if counts["videos"] != counts["inputs"]:
        raise RuntimeError(f"{counts['inputs']} inputs but {counts['videos']} videos in the output; left incomplete")
    output.finish(videos, counts)
    _report(counts, collector, segments, time.time() - started)
    return counts


def model_stage(cfg: Config, req: ScoreRequest) -> StageSpec:
    """The model actor pool that ends the scoring pipeline."""
    r = cfg.resources
    return StageSpec("model", ModelStage, kwargs={
        "checkpoint_uri": req.checkpoint_uri,
        "storage_options": options_for(req.checkpoint_uri, req.storage_options),
        "device": "cuda" if r.model_gpus > 0 else "cpu",
        "threads": max(1, round(r.model_cpus)), "batch_size": r.model_batch_size},
        batch_size=r.model_batch_size, cpus=r.model_cpus, gpus=r.model_gpus, actors=r.model_actors)


def _stream(cfg: Config, req: ScoreRequest, todo: list[dict], collector: VideoCollector) -> list:
    """Run the pipeline into ``collector``; returns the videos cut at speech left with chunks missing."""
    init_ray(req.address)
    stages = media_stages(cfg, cfg.segments, options_for(req.input_uri, req.storage_options), req.storage_options)
    ds = build_dataset(todo, [*stages, model_stage(cfg, req)])
    numbering = SpeechNumbering()
    started, last = time.time(), 0.0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for table in numbering.add(batch):
            collector.add(table)
        if time.time() - last > 5:
            last = time.time()
            rate = collector.seconds / max(1e-9, last - started)
            log.info(f"[score] {collector.videos_done}/{len(todo)} videos ({collector.videos_failed} failed), "
                     f"{collector.segments} segments, {rate:.1f} video-s/s")
    return numbering.incomplete()


def _report(counts: dict, collector: VideoCollector, segments, wall: float) -> None:
    import numpy as np

    def mean(col):
        values = segments.column(col).to_numpy(zero_copy_only=False).astype(float)
        return float(np.nanmean(values)) if len(values) else 0.0

    log.info(f"done in {wall:.1f} s: inputs {counts['inputs']} | ok {counts['videos_ok']} | failed "
             f"{counts['videos_failed']} | segments {counts['segments']} ({counts['segments_ok']} ok)")
    log.info(f"this run: {collector.videos_done} videos, {collector.seconds:.1f} video-seconds scored, "
             f"{collector.seconds / max(wall, 1e-9):.2f} video-s per wall second")
    log.info(f"per segment: decode {mean('decode_ms'):.0f} ms, speech-to-text {mean('asr_ms'):.0f} ms, "
             f"faces {mean('face_ms'):.0f} ms, model {mean('model_ms'):.0f} ms")
