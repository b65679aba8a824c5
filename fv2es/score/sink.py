"""The scoring job's output: segment parts committed per whole video, a per-video summary, a marker.

Layout of an output URI (any fsspec path)::

    segments/part-<run>-<n>.parquet   one row per segment; a video's rows are all in one part
    videos.parquet                    one row per video (written when every input is done)
    _SUCCESS                          JSON counts; present only when the output is complete
    _tmp/                             parts being written (removed on the next start)

A part appears under ``segments/`` only once it is fully written (written under ``_tmp/`` and
moved), and it only ever holds complete videos, so the set of videos in ``segments/`` is exactly
the set already done: a rerun skips them and never writes a row twice. Without ``_SUCCESS`` an
output is incomplete, whatever else is there.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from fv2es.media.failures import OK

SUCCESS = "_SUCCESS"
# Tests set this to N to make the job die (no cleanup, like SIGKILL) right after its N-th part.
FAULT_ENV = "FV2ES_FAULT_EXIT_AFTER_PARTS"


class ScoreOutput:
    """Reads and writes one output location: the one owner of the scoring output's layout.

    ``metadata`` (writing only) goes into every Parquet file's schema metadata.
    """

    def __init__(self, uri: str, storage_options: dict | None = None, metadata: dict[str, str] | None = None):
        self.uri = uri.rstrip("/")
        self.fs, self.root = url_to_fs(self.uri, **(storage_options or {}))
        self.metadata = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._parts = 0

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def is_complete(self) -> bool:
        """Whether the completion marker is there (else the output is incomplete, whatever is there)."""
        return self.fs.exists(self._path(SUCCESS))

    def success(self) -> dict | None:
        """The counts in ``_SUCCESS``; None for an incomplete output."""
        if not self.is_complete():
            return None
        with self.fs.open(self._path(SUCCESS), "r") as f:
            return json.load(f)

    def part_files(self) -> list[str]:
        """The committed segment parts, sorted."""
        folder = self._path("segments")
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".parquet"))

    def done_jobs(self) -> set[tuple[str, str]]:
        """(video_uri, speaker_side or "") of every job whose rows are already committed."""
        done: set[tuple[str, str]] = set()
        for part in self.part_files():
            with self.fs.open(part, "rb") as f:
                t = pq.read_table(f, columns=["video_uri", "speaker_side"])
            done.update(zip(t.column("video_uri").to_pylist(), (s or "" for s in t.column("speaker_side").to_pylist())))
        return done

    def start(self) -> None:
        """Begin (or resume) a run: forget parts of an interrupted run and the completion marker."""
        if self.fs.exists(self._path("_tmp")):
            self.fs.rm(self._path("_tmp"), recursive=True)
        if self.is_complete():
            self.fs.rm(self._path(SUCCESS))
        self.fs.makedirs(self._path("segments"), exist_ok=True)
        self.fs.makedirs(self._path("_tmp"), exist_ok=True)

    def _commit(self, table: pa.Table, name: str) -> str:
        tmp = self._path("_tmp", name.replace("/", "_"))
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self.metadata})
        with self.fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        final = self._path(name)
        self.fs.mv(tmp, final)
        return final

    def write_part(self, table: pa.Table) -> str:
        """Commit one part of whole videos' segment rows; returns its path."""
        self._parts += 1
        path = self._commit(table, f"segments/part-{self.run_id}-{self._parts:05d}.parquet")
        if self._parts == int(os.environ.get(FAULT_ENV, "0")):
            os._exit(137)  # fault injection for tests: die as a SIGKILL would, right after a commit
        return path

    def segment_schema(self) -> pa.Schema | None:
        """The schema of the segment table (that of its first part); None when nothing is committed."""
        parts = self.part_files()
        if not parts:
            return None
        with self.fs.open(parts[0], "rb") as f:
            return pq.read_schema(f)

    def metadata_of_parts(self) -> dict[str, str]:
        """The ``fv2es.*`` metadata the job wrote into the parts (version, emotions, model, config)."""
        schema = self.segment_schema()
        return {k.decode(): v.decode() for k, v in ((schema.metadata or {}) if schema else {}).items()}

    def read_segments(self, columns: list[str] | None = None) -> pa.Table | None:
        """Every committed segment row (``columns`` only, when given); None when nothing is committed."""
        tables = []
        for part in self.part_files():
            with self.fs.open(part, "rb") as f:
                tables.append(pq.read_table(f, columns=columns))
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def read_videos(self) -> pa.Table | None:
        """The per-video table; None until the job has finished (see :func:`summarize_videos`)."""
        if not self.fs.exists(self._path("videos.parquet")):
            return None
        with self.fs.open(self._path("videos.parquet"), "rb") as f:
            return pq.read_table(f)

    def finish(self, videos: pa.Table, counts: dict) -> None:
        """Write the per-video table, then the marker that says the output is complete."""
        self._commit(videos, "videos.parquet")
        if self.fs.exists(self._path("_tmp")):
            self.fs.rm(self._path("_tmp"), recursive=True)
        with self.fs.open(self._path(SUCCESS), "w") as f:
            json.dump(counts, f, indent=2)


class VideoCollector:
    """Gathers segment rows (which arrive in any order) until each job (a video, or one speaker of
    it) is whole, then commits whole jobs in parts of ``part_videos`` (or whatever is ready every ``flush_s`` seconds)."""

    def __init__(self, output: ScoreOutput, columns: list[str], part_videos: int, flush_s: float = 30.0):
        self.output, self.columns = output, columns
        self.part_videos, self.flush_s = part_videos, flush_s
        self.pending: dict[str, list[pa.Table]] = {}
        self.seen: dict[str, int] = {}
        self.ready: list[pa.Table] = []
        self.ready_videos = 0
        self.last_flush = time.monotonic()
        self.videos_done = self.videos_failed = self.segments = 0
        self.seconds = 0.0

    def add(self, batch: pa.Table) -> None:
        """Take a batch of scored segment rows; commit a part when enough whole videos are ready."""
        batch = batch.select(self.columns)
        # A job is one video, or one speaker of it (IEMOCAP dialogs: each actor's utterances).
        keys = list(zip(batch.column("video_uri").to_pylist(),
                        (s or "" for s in batch.column("speaker_side").to_pylist())))
        counts = batch.column("segment_count").to_pylist()
        for key in dict.fromkeys(keys):
            mask = pa.array([k == key for k in keys])
            rows = batch.filter(mask)
            self.pending.setdefault(key, []).append(rows)
            self.seen[key] = self.seen.get(key, 0) + rows.num_rows
            if self.seen[key] == counts[keys.index(key)]:
                self._complete(key)
        if self.ready_videos >= self.part_videos or (self.ready and time.monotonic() - self.last_flush > self.flush_s):
            self.flush()

    def _complete(self, key: tuple[str, str]) -> None:
        table = pa.concat_tables(self.pending.pop(key)).sort_by("segment_index")
        del self.seen[key]
        self.ready.append(table)
        self.ready_videos += 1
        self.videos_done += 1
        statuses = table.column("status").to_pylist()
        self.videos_failed += all(s != OK for s in statuses)
        self.segments += table.num_rows
        ok = np.array([s == OK for s in statuses])
        spans = _spans(table)
        self.seconds += float(np.nansum(spans[ok])) if ok.any() else 0.0

    def flush(self) -> None:
        """Commit every whole video gathered so far, ``part_videos`` videos per part."""
        for i in range(0, len(self.ready), self.part_videos):
            self.output.write_part(pa.concat_tables(self.ready[i : i + self.part_videos]))
        self.ready, self.ready_videos, self.last_flush = [], 0, time.monotonic()

    def incomplete(self) -> dict[tuple[str, str], int]:
        """Jobs with rows still missing (empty after a full run: anything else is a bug)."""
        return dict(self.seen)


def _spans(table: pa.Table) -> np.ndarray:
    start = table.column("start").to_numpy(zero_copy_only=False).astype(float)
    end = table.column("end").to_numpy(zero_copy_only=False).astype(float)
    return end - start


def summarize_videos(segments: pa.Table, emotions: list[str]) -> pa.Table:
    """One row per video: duration-weighted mean probabilities over its ok segments, the
    dominant emotion, segment counts and the first failure."""
    prob_cols = [f"prob_{e}" for e in emotions]
    rows = []
    for uri in dict.fromkeys(segments.column("video_uri").to_pylist()):
        seg = segments.filter(pc.equal(segments.column("video_uri"), uri))
        status = seg.column("status").to_pylist()
        errors = seg.column("error").to_pylist()
        ok = np.array([s == OK for s in status])
        weights = np.nan_to_num(_spans(seg), nan=0.0)[ok]
        probs = np.stack([seg.column(c).to_numpy(zero_copy_only=False).astype(float) for c in prob_cols], 1)[ok]
        if ok.any():
            w = weights if weights.sum() > 0 else np.ones(len(weights))
            mean = (probs * w[:, None]).sum(0) / w.sum()
        else:
            mean = np.full(len(emotions), np.nan)
        failures = [(s, e) for s, e in zip(status, errors) if s != OK]
        durations = seg.column("video_duration_s").to_pylist()
        rows.append({
            "video_uri": uri,
            "video_duration_s": next((d for d in durations if d is not None), None),
            "segments": seg.num_rows,
            "segments_ok": int(ok.sum()),
            "segments_failed": int((~ok).sum()),
            "scored_seconds": float(weights.sum()),
            **{c: (float(m) if ok.any() else None) for c, m in zip(prob_cols, mean)},
            "dominant_emotion": emotions[int(np.argmax(mean))] if ok.any() else None,
            "status": OK if ok.any() else failures[0][0],
            "error": failures[0][1] if failures else "",
            "model_id": seg.column("model_id")[0].as_py(),
        })
    schema = pa.schema([
        ("video_uri", pa.string()), ("video_duration_s", pa.float64()), ("segments", pa.int32()),
        ("segments_ok", pa.int32()), ("segments_failed", pa.int32()), ("scored_seconds", pa.float64()),
        *[(c, pa.float64()) for c in prob_cols], ("dominant_emotion", pa.string()),
        ("status", pa.string()), ("error", pa.string()), ("model_id", pa.string()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)
