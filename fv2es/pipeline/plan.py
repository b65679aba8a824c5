"""What to process: the videos behind an input URI, and the segments of each video.

Listing happens on the driver and touches only names (one listing call for a folder or prefix).
Anything that needs a video's bytes (its duration, its sidecar captions) is decided inside the
decode task, in parallel, by :func:`plan_segments`.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from fsspec.core import url_to_fs

from fv2es.config import ScoreConfig, SegmentsConfig
from fv2es.data.manifest import read_manifest
from fv2es.data.transcripts import Segment, text_for_span
from fv2es.errors import InputError
from fv2es.storage import redact_uri

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")


# Where a segment's text comes from (the ``text_source`` column).
MANIFEST, CAPTION, ASR, NO_TEXT = "manifest", "caption", "asr", "none"


@dataclass(frozen=True)
class SegmentSpec:
    """One segment to score; ``start``/``end`` None mean the start/end of the media."""

    start: float | None
    end: float | None
    text: str = ""
    utterance_id: str | None = None
    text_source: str = NO_TEXT  # manifest | caption | asr | none


def is_manifest(uri: str) -> bool:
    """Whether ``uri`` names a manifest (by its suffix, compression suffixes ignored)."""
    path = uri.lower()
    for compressed in (".gz", ".bz2", ".xz", ".zst"):
        path = path.removesuffix(compressed)
    return path.endswith(MANIFEST_SUFFIXES)


def list_videos(uri: str, extensions: Sequence[str], storage_options: dict | None = None) -> list[str]:
    """Video files named by ``uri``: one file, a glob, or every file under a folder/prefix.

    Raises:
        InputError: ``uri`` names nothing, or no file with one of ``extensions``.
    """
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
        raise InputError(f"input {redact_uri(uri)!r} does not exist (or cannot be listed)")
    videos = sorted(p for p in found if p.lower().endswith(exts) and not posixpath.basename(p).startswith("."))
    if not videos:
        raise InputError(f"no videos under {redact_uri(uri)!r} (looked for {', '.join(exts)})")
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
        raise InputError(f"manifest {redact_uri(uri)!r} has no rows")
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


def job_id(job: dict) -> str:
    """A job's id, the same in every run: a digest of its video, speaker side, audio file and channel.

    A video can be several jobs (IEMOCAP's two actors; a manifest giving each row its own audio
    channel or file), so rows are gathered and resumed by this id, never by the video alone.
    """
    channel = job.get("audio_channel")
    channel = -1 if channel is None or channel < 0 else int(channel)
    key = json.dumps([job["video_uri"], job.get("speaker_side") or "", job.get("audio_uri") or "", channel])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def given_segments(job: dict) -> list[SegmentSpec] | None:
    """The manifest's segments of a job, or None when the job leaves them to the planner."""
    if not job["segments"]:
        return None
    return [SegmentSpec(start, end, text or "", uid, MANIFEST if text else NO_TEXT)
            for uid, start, end, text in json.loads(job["segments"])]


def windows(start: float, end: float, length: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``length`` seconds covering [start, end); the last may be shorter."""
    count = max(1, math.ceil((end - start) / length - 1e-9))
    return [(start + i * length, min(end, start + (i + 1) * length)) for i in range(count)]


def needs_transcript(asr_mode: str, text_source: str) -> bool:
    """Whether speech-to-text should give a segment its text: ``always``, or ``auto`` when
    neither a manifest nor a caption file gave it any."""
    return asr_mode == "always" or (asr_mode == "auto" and text_source == NO_TEXT)


def cuts_at_speech(given: list[SegmentSpec] | None, captions: list[Segment], config: SegmentsConfig,
                   asr_mode: str) -> bool:
    """Whether a video is cut at its speech: ``auto`` segments, speech-to-text on, and neither
    manifest segments nor a caption file to take the segments or the text from."""
    return given is None and not captions and config.mode == "auto" and asr_mode != "never"


def _text(own: str, captions: list[Segment], start: float | None, end: float | None) -> tuple[str, str]:
    """A segment's (text, text_source): its manifest text, else the captions overlapping it.

    A video with a caption file takes its text from it even where no cue overlaps a segment
    (the captions say nobody speaks there), so such a segment is ``caption`` with empty text.
    """
    if own:
        return own, MANIFEST
    if captions:
        return text_for_span(captions, start, end), CAPTION
    return "", NO_TEXT


def _window(captions: list[Segment], start: float, end: float) -> SegmentSpec:
    text, source = _text("", captions, start, end)
    return SegmentSpec(start, end, text, None, source)


def plan_segments(
    given: list[SegmentSpec] | None,
    duration: float,
    config: SegmentsConfig,
    captions: list[Segment] | None = None,
) -> list[SegmentSpec]:
    """The segments to score for one video of ``duration`` seconds.

    - Manifest segments are kept as given; one without times covers the whole video (cut into
      windows in ``window`` mode).
    - Otherwise, ``auto`` takes timed sidecar captions (.srt/.vtt cues) when there are any,
      else the whole video; ``window`` cuts fixed windows of ``window_s``; ``whole`` takes the
      whole video. (Cutting at speech, when nothing gives segments, is the transcription
      stage's job: see :func:`cuts_at_speech`.)
    - A whole-video segment longer than ``max_segment_s`` is cut into windows of that length
      (it would not fit a model batch), each keeping the manifest id with ``#k`` appended.
    - Text comes from the manifest row, else from the captions that overlap the segment.
    """
    captions = captions or []
    if given is None:
        timed = [c for c in captions if c.start is not None and c.end is not None and c.end > c.start]
        if config.mode == "auto" and timed:
            return [SegmentSpec(c.start, c.end, c.text, None, CAPTION) for c in timed]
        if config.mode == "window":
            return [_window(captions, s, e) for s, e in windows(0.0, duration, config.window_s)]
        given = [SegmentSpec(None, None, "")]
    planned = []
    for spec in given:
        if spec.start is not None or spec.end is not None:
            start = 0.0 if spec.start is None else spec.start
            end = duration if spec.end is None else spec.end
            text, source = _text(spec.text, captions, start, end)
            planned.append(SegmentSpec(start, end, text, spec.utterance_id, source))
            continue
        if config.mode == "window":
            spans = windows(0.0, duration, config.window_s)
        elif duration <= config.max_segment_s:
            spans = [(0.0, duration)]
        else:
            spans = windows(0.0, duration, config.max_segment_s)
        for k, (s, e) in enumerate(spans):
            uid = spec.utterance_id if len(spans) == 1 or spec.utterance_id is None else f"{spec.utterance_id}#{k}"
            text, source = _text(spec.text, captions, s, e)
            planned.append(SegmentSpec(s, e, text, uid, source))
    return planned
