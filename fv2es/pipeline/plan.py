"""What to process: the videos behind an input URI, and the segments of each video.

Listing happens on the driver and touches only names (one listing call for a folder or prefix).
Anything that needs a video's bytes (its duration, its sidecar captions) is decided inside the
decode task, in parallel, by :func:`plan_segments`.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from fsspec.core import url_to_fs

from fv2es.config import ScoreConfig
from fv2es.data.manifest import read_manifest
from fv2es.data.transcripts import Segment, text_for_span

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")


class InputError(ValueError):
    """The input URI names nothing that can be scored; the message says what was looked for."""


@dataclass(frozen=True)
class SegmentSpec:
    """One segment to score; ``start``/``end`` None mean the start/end of the media."""

    start: float | None
    end: float | None
    text: str = ""
    utterance_id: str | None = None


def is_manifest(uri: str) -> bool:
    path = uri.lower()
    for compressed in (".gz", ".bz2", ".xz", ".zst"):
        path = path.removesuffix(compressed)
    return path.endswith(MANIFEST_SUFFIXES)


def list_videos(uri: str, extensions: Sequence[str], storage_options: dict | None = None) -> list[str]:
    """Video files named by ``uri``: one file, a glob, or every file under a folder/prefix."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    prefix = "://" in uri and not uri.startswith("file://")
    exts = tuple(e.lower() for e in extensions)
    if any(ch in path for ch in "*?["):
        found = fs.glob(path)
    elif fs.isfile(path):
        return [uri]
    elif fs.isdir(path):
        found = fs.find(path)
    else:
        raise InputError(f"input {uri!r} does not exist (or cannot be listed)")
    videos = sorted(p for p in found if p.lower().endswith(exts) and not posixpath.basename(p).startswith("."))
    if not videos:
        raise InputError(f"no videos under {uri!r} (looked for {', '.join(exts)})")
    # Listings drop the protocol; give remote paths back theirs so workers open the same file.
    return [fs.unstrip_protocol(p) for p in videos] if prefix else videos


def list_jobs(uri: str, config: ScoreConfig, storage_options: dict | None = None) -> list[dict]:
    """One job row per video: from a manifest (its rows grouped by video) or from a listing.

    A job's ``segments`` is JSON: the manifest's segments of that video, or ``""`` to let
    :func:`plan_segments` choose (captions, the whole video, or windows).
    """
    if not is_manifest(uri):
        return [_job(v) for v in list_videos(uri, config.video_extensions, storage_options)]
    utterances = read_manifest(uri, storage_options=storage_options)
    if not utterances:
        raise InputError(f"manifest {uri!r} has no rows")
    return jobs_from_utterances(utterances)


def jobs_from_utterances(utterances) -> list[dict]:
    """Group utterances into decode jobs: one per video and speaker (side, audio file, channel).

    IEMOCAP's dialog videos hold both actors; each actor's utterances are one job, with that
    actor's half of the frame and channel of the wav.
    """
    groups: dict[tuple, list] = {}
    for u in utterances:
        groups.setdefault((u.video_uri, u.speaker_side, u.audio_uri, u.audio_channel), []).append(u)
    jobs = []
    for (video, side, audio, channel), rows in groups.items():
        specs = [[u.id, u.start, u.end, u.text] for u in sorted(rows, key=lambda u: (u.start or 0.0, u.id))]
        jobs.append(_job(video, json.dumps(specs), audio, channel, side))
    return jobs


def _job(video_uri: str, segments: str = "", audio_uri=None, audio_channel=None, speaker_side=None) -> dict:
    return {
        "video_uri": video_uri,
        "segments": segments,
        "audio_uri": audio_uri or "",
        "audio_channel": -1 if audio_channel is None else int(audio_channel),
        "speaker_side": speaker_side or "",
    }


def given_segments(job: dict) -> list[SegmentSpec] | None:
    """The manifest's segments of a job, or None when the job leaves them to the planner."""
    if not job["segments"]:
        return None
    return [SegmentSpec(start, end, text or "", uid) for uid, start, end, text in json.loads(job["segments"])]


def windows(start: float, end: float, length: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``length`` seconds covering [start, end); the last may be shorter."""
    count = max(1, math.ceil((end - start) / length - 1e-9))
    return [(start + i * length, min(end, start + (i + 1) * length)) for i in range(count)]


def plan_segments(
    given: list[SegmentSpec] | None,
    duration: float,
    config: ScoreConfig,
    captions: list[Segment] | None = None,
) -> list[SegmentSpec]:
    """The segments to score for one video of ``duration`` seconds.

    - Manifest segments are kept as given; one without times covers the whole video (cut into
      windows in ``window`` mode).
    - Otherwise, ``auto`` takes timed sidecar captions (.srt/.vtt cues) when there are any,
      else the whole video; ``window`` cuts fixed windows of ``window_s``; ``whole`` takes the
      whole video.
    - A whole-video segment longer than ``max_segment_s`` is cut into windows of that length
      (it would not fit a model batch), each keeping the manifest id with ``#k`` appended.
    - Text comes from the manifest row, else from the captions that fall in the segment.
    """
    captions = captions or []
    if given is None:
        timed = [c for c in captions if c.start is not None and c.end is not None and c.end > c.start]
        if config.segments == "auto" and timed:
            return [SegmentSpec(c.start, c.end, c.text) for c in timed]
        if config.segments == "window":
            return [SegmentSpec(s, e, text_for_span(captions, s, e)) for s, e in windows(0.0, duration, config.window_s)]
        given = [SegmentSpec(None, None, "")]
    planned = []
    for spec in given:
        if spec.start is not None or spec.end is not None:
            start = 0.0 if spec.start is None else spec.start
            end = duration if spec.end is None else spec.end
            planned.append(SegmentSpec(start, end, spec.text or text_for_span(captions, start, end), spec.utterance_id))
            continue
        if config.segments == "window":
            spans = windows(0.0, duration, config.window_s)
        elif duration <= config.max_segment_s:
            spans = [(0.0, duration)]
        else:
            spans = windows(0.0, duration, config.max_segment_s)
        for k, (s, e) in enumerate(spans):
            uid = spec.utterance_id if len(spans) == 1 or spec.utterance_id is None else f"{spec.utterance_id}#{k}"
            planned.append(SegmentSpec(s, e, spec.text or text_for_span(captions, s, e), uid))
    return planned
