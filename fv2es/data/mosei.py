"""CMU-MOSEI from the raw release: full videos, segmented transcripts and emotion labels.

Default layout under ``root_uri`` (change it with :class:`MoseiLayout`)::

    Videos/Full/Combined/<video_id>.mp4
    Transcript/Segmented/Combined/<video_id>.txt   "<video_id>___<segment>___<start>___<end>___<text>"

Each transcript segment becomes one :class:`~fv2es.data.utterance.Utterance` with id
``<video_id>_<segment>`` (the ids MESM's split lists use), the segment's times and text, and
the emotions whose intensity is > 0, in the seed's order :data:`MOSEI_EMOTIONS`.

Labels come from either file (:func:`read_mosei_labels`):

* the SDK's ``CMU_MOSEI_Labels.csd`` (HDF5, needs ``h5py``): computational sequence
  ``All Labels``, per video ``features`` (n, 7) = sentiment + six emotions in the SDK's order
  :data:`CSD_COLUMNS`, and ``intervals`` (n, 2) in seconds; or
* a CSV (a file, or a folder of ``*.csv``) with a header::

      video_id,segment,start,end,anger,disgust,fear,happy,sad,surprise

  ``segment`` and/or ``start``,``end`` identify the transcript segment (``segment`` wins when
  both are there); the six emotion columns are intensities, in any order; other columns (e.g.
  ``sentiment``) are ignored; a blank intensity counts as 0. Rows with the same key are summed,
  so one row per annotator works too. The release's own Mechanical Turk sheets
  (``Labels/*.csv``: ``Input.VIDEO_ID``, ``Input.CLIP``, ``Answer.happiness``, ...) read as they are.

Label records without a ``segment`` are matched to the transcript segment of the same video
whose start and end both lie within ``tolerance`` seconds (the closest one).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from fv2es.data.transcripts import Segment, decode_text, parse_mosei_transcript
from fv2es.data.utterance import ReadStats, Utterance
from fv2es.emotions import MOSEI_EMOTIONS
from fv2es.errors import InputError

# Column order of the SDK's "All Labels" computational sequence.
CSD_COLUMNS = ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")
DATASET = "mosei"

# Other spellings of our column names: the release's Mechanical Turk sheets and common exports.
_ALIASES = {
    "input.video_id": "video_id",
    "video": "video_id",
    "input.clip": "segment",
    "clip": "segment",
    "segment_id": "segment",
    "happiness": "happy",
    "sadness": "sad",
}


@dataclass(frozen=True)
class MoseiLayout:
    """Where the parts of the release are, relative to the root unless a URI/absolute path."""

    # Video file of a video id; ``{video_id}`` is replaced.
    video_pattern: str = "Videos/Full/Combined/{video_id}.mp4"
    # Folder of segmented transcripts, one ``<video_id>.txt`` per video.
    transcript_dir: str = "Transcript/Segmented/Combined"
    # Separate audio file of a video id (e.g. "Audio/Full/WAV_16000/{video_id}.wav"); None: from the video.
    audio_pattern: str | None = None
    # Seconds by which a label record's start and end may differ from its transcript segment's.
    tolerance: float = 0.1
    # Keep segments where no emotion is present (labels ``()``), as MESM's preprocessing does.
    keep_no_emotion: bool = True


@dataclass(frozen=True)
class LabelRecord:
    """Emotion intensities of one segment, keyed by ``segment`` or by ``start``/``end``."""

    video_id: str
    segment: str | None
    start: float | None
    end: float | None
    # In :data:`MOSEI_EMOTIONS` order.
    intensities: tuple[float, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """Emotions present (intensity > 0), in :data:`MOSEI_EMOTIONS` order."""
        return tuple(e for e, v in zip(MOSEI_EMOTIONS, self.intensities) if v > 0)


def read_mosei(
    root_uri: str,
    labels_uri: str | None = None,
    layout: MoseiLayout = MoseiLayout(),
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[list[Utterance], ReadStats]:
    """Read CMU-MOSEI segments under ``root_uri`` with labels from ``labels_uri``.

    Args:
        root_uri: the raw release's root; any fsspec URI or local path.
        labels_uri: a ``.csd`` or CSV label file, or a folder of CSVs (see the module doc);
            None reads the segments unlabelled, for scoring.
        layout: where videos/transcripts are, the matching tolerance, no-emotion handling.
        storage_options: passed to fsspec for the root and the labels.

    Returns:
        Utterances (videos in id order, segments in transcript order) and the counts: segments
        without a label record or a video are dropped; label records that match no segment are
        counted in ``unmatched_labels``.
    """
    options = dict(storage_options or {})
    fs, root = url_to_fs(root_uri, **options)
    keep_protocol = "://" in root_uri
    segments = _read_transcripts(fs, _resolve(root, layout.transcript_dir))
    records = None if labels_uri is None else read_mosei_labels(labels_uri, options)
    match = None if records is None else _Matcher(records, layout.tolerance)
    has_video = _VideoIndex(fs, _resolve(root, layout.video_pattern))

    audio = None if layout.audio_pattern is None else _resolve(root, layout.audio_pattern)
    utterances: list[Utterance] = []
    counts: Counter[str] = Counter()
    for (video_id, segment_id), segment in segments.items():
        counts["seen"] += 1
        labels: tuple[str, ...] = ()
        if match is not None:
            record = match(video_id, segment_id, segment)
            if record is None:
                counts["missing_labels"] += 1
                continue
            labels = record.labels
        if not has_video(video_id):
            counts["missing_video"] += 1
            continue
        # The release has a few slightly negative starts (alignment slack): clamp them.
        start = max(0.0, segment.start)
        if segment.end <= start:
            counts["bad_times"] += 1
            continue
        if match is not None and not labels:
            if not layout.keep_no_emotion:
                counts["dropped_no_emotion"] += 1
                continue
            counts["no_emotion"] += 1
        counts["missing_transcript"] += not segment.text
        utterances.append(
            Utterance(
                id=f"{video_id}_{segment_id}",
                video_uri=_uri(fs, has_video.path(video_id), keep_protocol),
                start=start,
                end=segment.end,
                text=segment.text,
                labels=labels,
                audio_uri=None if audio is None else _uri(fs, _fill(audio, video_id), keep_protocol),
                dataset=DATASET,
            )
        )

    stats = ReadStats(
        seen=counts["seen"],
        kept=len(utterances),
        missing_video=counts["missing_video"],
        missing_labels=counts["missing_labels"],
        bad_times=counts["bad_times"],
        dropped_no_emotion=counts["dropped_no_emotion"],
        missing_transcript=counts["missing_transcript"],
        no_emotion=counts["no_emotion"],
        unmatched_labels=0 if match is None else match.unused(),
    )
    return utterances, stats


def read_mosei_labels(uri: str, storage_options: Mapping[str, Any] | None = None) -> list[LabelRecord]:
    """Label records from a ``.csd`` file, a CSV file, or a folder of CSVs (format in the module doc)."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if path.endswith(".csd"):
        return _read_csd(fs, path)
    if fs.isdir(path):
        files = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".csv"))
        if not files:
            raise FileNotFoundError(f"no .csv label files in {uri}")
    else:
        files = [path]
    rows: dict[tuple, LabelRecord] = {}
    for file in files:
        for record in _read_label_csv(fs, file):
            key = (record.video_id, record.segment, record.start, record.end)
            if key in rows:  # another annotator's row for the same segment: sum the intensities
                prior = rows[key].intensities
                record = LabelRecord(*key, tuple(a + b for a, b in zip(prior, record.intensities)))
            rows[key] = record
    return list(rows.values())


def _read_label_csv(fs: fsspec.AbstractFileSystem, path: str) -> list[LabelRecord]:
    reader = csv.DictReader(io.StringIO(decode_text(fs.cat_file(path))))
    columns = {name: _canonical(name) for name in reader.fieldnames or ()}
    present = set(columns.values())
    missing = [c for c in ("video_id", *MOSEI_EMOTIONS) if c not in present]
    if missing:
        raise InputError(f"{path}: missing label column(s) {missing} (have {list(columns)})")
    if "segment" not in present and not {"start", "end"} <= present:
        raise InputError(f"{path}: needs a 'segment' column or 'start' and 'end' columns")
    records = []
    for number, raw in enumerate(reader, start=1):
        row = {columns[k]: (v or "").strip() for k, v in raw.items() if k in columns}
        where = f"{path}: row {number}"
        # Mechanical Turk sheets hold a URL or path; the id is its last component.
        video_id = row["video_id"].rstrip("/").rsplit("/", 1)[-1]
        if not video_id:
            raise InputError(f"{where}: empty video_id")
        segment = _segment_id(row.get("segment", ""))
        start = end = None
        if segment is None:
            start, end = (
                _number(row.get("start", ""), where, "start"),
                _number(row.get("end", ""), where, "end"),
            )
            if start is None or end is None:
                raise InputError(f"{where}: needs a segment or both start and end")
        intensities = tuple(_number(row[e], where, e) or 0.0 for e in MOSEI_EMOTIONS)
        records.append(LabelRecord(video_id, segment, start, end, intensities))
    return records


def _read_csd(fs: fsspec.AbstractFileSystem, path: str) -> list[LabelRecord]:
    try:
        import h5py
    except ImportError as e:  # optional: only the SDK's HDF5 format needs it
        raise ImportError(
            "reading a .csd label file needs h5py (pip install h5py), or export it to CSV"
        ) from e
    records = []
    with fs.open(path, "rb") as f, h5py.File(f, "r") as h5:
        sequence = h5[next(iter(h5.keys()))]  # the SDK reads the first (only) root group
        names = _dimension_names(sequence) or CSD_COLUMNS
        columns = [names.index(e) for e in MOSEI_EMOTIONS]
        for video_id, group in sequence["data"].items():
            features, intervals = group["features"][()], group["intervals"][()]
            if features.shape[0] != intervals.shape[0] or features.shape[1] != len(names):
                raise InputError(
                    f"{path}: {video_id}: features {features.shape} do not fit intervals {intervals.shape}"
                )
            for row, (start, end) in zip(features, intervals):
                intensities = tuple(float(row[c]) for c in columns)
                records.append(LabelRecord(video_id, None, float(start), float(end), intensities))
    return records


def _dimension_names(sequence: Any) -> tuple[str, ...] | None:
    """The sequence's own column names when its metadata has a usable "dimension names" entry."""
    try:
        raw = sequence["metadata"]["dimension names"][0]
        names = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        names = tuple(_canonical(str(n)) for n in names)
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    return names if set(MOSEI_EMOTIONS) <= set(names) else None


class _Matcher:
    """Finds the label record of a transcript segment: by segment id, else by nearest times."""

    def __init__(self, records: list[LabelRecord], tolerance: float):
        self.records, self.tolerance = records, tolerance
        self.by_segment = {(r.video_id, r.segment): i for i, r in enumerate(records) if r.segment is not None}
        self.by_video: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            if r.segment is None:
                self.by_video[r.video_id].append(i)
        self.used: set[int] = set()

    def __call__(self, video_id: str, segment_id: str, segment: Segment) -> LabelRecord | None:
        found = self.by_segment.get((video_id, segment_id))
        if found is None:
            # (worse of the two boundary errors, index): the closest record wins, ties go to the first.
            errors = [
                (max(abs(self.records[i].start - segment.start), abs(self.records[i].end - segment.end)), i)
                for i in self.by_video.get(video_id, ())
            ]
            found = min((e for e in errors if e[0] <= self.tolerance), default=(None, None))[1]
        if found is None:
            return None
        self.used.add(found)
        return self.records[found]

    def unused(self) -> int:
        return len(self.records) - len(self.used)


class _VideoIndex:
    """Whether a video file exists, listing its folder once instead of one request per video."""

    def __init__(self, fs: fsspec.AbstractFileSystem, pattern: str):
        self.fs, self.pattern = fs, pattern
        folder = posixpath.dirname(pattern)
        self.listing: set[str] | None = None
        if "{video_id}" not in folder:
            try:
                self.listing = {p.rstrip("/") for p in fs.ls(folder, detail=False)}
            except FileNotFoundError:
                self.listing = set()

    def path(self, video_id: str) -> str:
        return _fill(self.pattern, video_id)

    def __call__(self, video_id: str) -> bool:
        path = self.path(video_id)
        return path in self.listing if self.listing is not None else self.fs.exists(path)


def _read_transcripts(fs: fsspec.AbstractFileSystem, folder: str) -> dict[tuple[str, str], Segment]:
    try:
        files = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".txt"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"MOSEI transcript folder not found: {folder}") from e
    out: dict[tuple[str, str], Segment] = {}
    # One batched read: on object storage fsspec fetches the files concurrently.
    for data in fs.cat(files, on_error="raise").values() if files else ():
        out.update(parse_mosei_transcript(decode_text(data)))
    return dict(sorted(out.items(), key=lambda kv: kv[0][0]))  # stable: keeps segment order per video


def _canonical(name: str) -> str:
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name.startswith("answer."):
        name = name[len("answer.") :]
    return _ALIASES.get(name, name)


def _segment_id(text: str) -> str | None:
    # Spreadsheet round trips turn segment 3 into "3.0"; transcripts say "3".
    try:
        number = float(text)
    except ValueError:
        return text or None
    return str(int(number)) if number.is_integer() else text


def _number(text: str, where: str, column: str) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: column {column!r}: not a number: {text!r}") from None


def _resolve(root: str, pattern: str) -> str:
    if "://" in pattern or pattern.startswith("/"):
        return url_to_fs(pattern)[1] if "://" in pattern else pattern
    return posixpath.join(root, pattern)


def _fill(pattern: str, video_id: str) -> str:
    return pattern.replace("{video_id}", video_id)


def _uri(fs: fsspec.AbstractFileSystem, path: str, keep_protocol: bool) -> str:
    return fs.unstrip_protocol(path) if keep_protocol else path
