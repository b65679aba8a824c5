"""The scoring job's output: segment parts committed per whole job, a per-video summary, a marker.

Layout of an output URI (any fsspec path)::

    _LEASE                            the running job's lease (see fv2es.score.lease); absent when idle
    _MODEL.json                       the model id and config digest every row was scored with
    segments/part-<run>-<n>.parquet   one row per segment; a job's rows are all in one part
    videos.parquet                    one row per video (written when every input is done)
    _SUCCESS                          JSON counts; present only when the output is complete
    _tmp/                             parts being written (removed on the next start)

A part appears under ``segments/`` only once it is fully written (written under ``_tmp/`` and
moved), and it only ever holds complete jobs (a job: a video, or one speaker or audio track of
it, named by its ``job_id``), so the set of jobs in ``segments/`` is exactly the set already done:
a rerun skips them and never writes a row twice. A job re-scored by ``--retry-failed`` has rows in
two parts: the later part (parts sort by run, then number) wins, everywhere rows are read, and
:meth:`ScoreOutput.finish` rewrites the earlier parts without the superseded rows. Without
``_SUCCESS`` an output is incomplete, whatever else is there.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from fv2es.errors import UserError
from fv2es.media.failures import OK
from fv2es.pipeline.stages.decode import job_id
from fv2es.score.lease import OutputLease
from fv2es.storage import redact_text, redact_uri

SUCCESS = "_SUCCESS"
MODEL = "_MODEL.json"
log = logging.getLogger(__name__)


class OutputWriteError(UserError):
    """The output store kept refusing writes (after retries); what was committed stays."""


class OutputMismatch(UserError):
    """The output holds scores of another model or config than this run's."""


class ScoreOutput:
    """Reads and writes one output location: the one owner of the scoring output's layout.

    ``metadata`` (writing only) goes into every Parquet file's schema metadata. A write that fails
    with a store error (an outage, a throttle) is tried again ``write_retries`` times, after 1, 2,
    4 ... seconds (``backoff_s`` doubled), then ends the job with :class:`OutputWriteError`.
    """

    def __init__(self, uri: str, storage_options: dict | None = None, metadata: dict[str, str] | None = None,
                 write_retries: int = 5, backoff_s: float = 1.0):
        self.uri = uri.rstrip("/")
        self.fs, self.root = url_to_fs(self.uri, **(storage_options or {}))
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.metadata = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.write_retries, self.backoff_s = write_retries, backoff_s
        self._parts = 0
        self._lease: OutputLease | None = None

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def lease(self, ttl_s: float = 120.0) -> OutputLease:
        """This output's lease (a context manager); while it is held, every commit checks it is still ours."""
        self._lease = OutputLease(self.fs, self.root, self.uri, ttl_s)
        return self._lease

    def is_complete(self) -> bool:
        """Whether the completion marker is there (else the output is incomplete, whatever is there)."""
        return self.fs.exists(self._path(SUCCESS))

    def success(self) -> dict | None:
        """The counts in ``_SUCCESS``; None for an incomplete output."""
        if not self.is_complete():
            return None
        with self.fs.open(self._path(SUCCESS), "r") as f:
            return json.load(f)

    def pin(self, identity: dict[str, str]) -> None:
        """Record ``identity`` (``model_id``, ``config_digest``, ...) at the first start; refuse a
        run whose ``model_id`` or ``config_digest`` differs from the recorded ones, so one output
        never mixes two models' scores. Outputs written before ``_MODEL.json`` existed are judged
        by their parts' metadata."""
        path = self._path(MODEL)
        if self.fs.exists(path):
            with self.fs.open(path, "r") as f:
                recorded = json.load(f)
        else:
            meta = self.metadata_of_parts()
            recorded = {"model_id": meta["fv2es.model_id"]} if "fv2es.model_id" in meta else None
        if recorded is not None:
            for key, what in (("model_id", "model"), ("config_digest", "scoring config")):
                if key in recorded and recorded[key] != identity[key]:
                    raise OutputMismatch(
                        f"output {redact_uri(self.uri)} holds scores made with {what} {recorded[key]}, this run's "
                        f"is {identity[key]}; one output holds one model's scores: give a new --output "
                        f"(or rerun with the checkpoint and config it was made with)")
            if self.fs.exists(path):
                return
        self._retrying(f"write {MODEL}", lambda: self.fs.pipe_file(path, json.dumps(identity, indent=2).encode()))

    def part_files(self) -> list[str]:
        """The committed segment parts, sorted (oldest first: names start with the run's time)."""
        folder = self._path("segments")
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".parquet"))

    def _read_part(self, part: str, columns: list[str] | None = None) -> pa.Table:
        wanted = None if columns is None else [c for c in columns if c != "job_id"] + ["video_uri", "speaker_side"]
        with self.fs.open(part, "rb") as f:
            names = pq.read_schema(f).names
            f.seek(0)
            if wanted is not None and "job_id" in names:
                wanted.append("job_id")
            table = pq.read_table(f, columns=list(dict.fromkeys(wanted)) if wanted is not None else None)
        if "job_id" not in table.column_names:  # written before job ids: a job was a video and its side
            ids = [job_id({"video_uri": v, "speaker_side": s}) for v, s in
                   zip(table.column("video_uri").to_pylist(), table.column("speaker_side").to_pylist())]
            table = table.append_column("job_id", pa.array(ids, pa.string()))
        return table

    def _latest_parts(self, parts: list[str]) -> dict[str, int]:
        """job id -> index (in ``parts``) of the last part holding its rows (the rows that count)."""
        latest: dict[str, int] = {}
        for i, part in enumerate(parts):
            latest.update(dict.fromkeys(self._read_part(part, ["job_id"]).column("job_id").to_pylist(), i))
        return latest

    def done_jobs(self, redo: Callable[[str, str], bool] | None = None) -> set[str]:
        """The ids of the jobs whose rows are committed, less those with a row whose
        ``(status, error)`` ``redo`` picks (``--retry-failed``: the transient failures)."""
        parts = self.part_files()
        latest = self._latest_parts(parts)
        done = set(latest)
        if redo is None:
            return done
        for i, part in enumerate(parts):
            t = self._read_part(part, ["job_id", "status", "error"])
            for job, status, error in zip(*(t.column(c).to_pylist() for c in ("job_id", "status", "error"))):
                if latest[job] == i and redo(status, error or ""):
                    done.discard(job)
        return done

    def start(self) -> None:
        """Begin (or resume) a run, holding the lease: forget the parts an interrupted run left in
        ``_tmp/`` (the lease says no other run is writing) and the completion marker. On an
        object store nothing else is made (a bucket is never created); on disk the folders are."""
        if self.fs.exists(self._path("_tmp")):
            self._retrying("clear _tmp/", lambda: self.fs.rm(self._path("_tmp"), recursive=True))
        if self.is_complete():
            self._retrying(f"remove {SUCCESS}", lambda: self.fs.rm(self._path(SUCCESS)))
        if self.local:
            self.fs.makedirs(self._path("segments"), exist_ok=True)
            self.fs.makedirs(self._path("_tmp"), exist_ok=True)

    def _retrying(self, what: str, fn: Callable[[], object]):
        """``fn()``, tried again after a store error with backoff; then :class:`OutputWriteError`."""
        for attempt in range(self.write_retries + 1):
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 -- store errors only; anything else is re-raised
                if not _store_error(e):
                    raise
                reason = redact_text(f"{type(e).__name__}: {e}", self.uri)
                if attempt == self.write_retries:
                    raise OutputWriteError(
                        f"output {redact_uri(self.uri)}: cannot {what} after {attempt + 1} tries ({reason}); "
                        f"what was committed before is kept: run the same command again to resume") from None
                log.warning(f"output {redact_uri(self.uri)}: {what} failed ({reason}); trying again")
                time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _commit(self, table: pa.Table, name: str) -> str:
        if self._lease is not None:
            self._lease.check()
        tmp = self._path("_tmp", name.replace("/", "_"))
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self.metadata})
        final = self._path(name)

        def write():
            with self.fs.open(tmp, "wb") as f:
                pq.write_table(table, f)
            self.fs.mv(tmp, final)

        self._retrying(f"write {name}", write)
        return final

    def write_part(self, table: pa.Table) -> str:
        """Commit one part of whole jobs' segment rows; returns its path."""
        self._parts += 1
        return self._commit(table, f"segments/part-{self.run_id}-{self._parts:05d}.parquet")

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
        """Every committed segment row that counts (a re-scored job's latest rows only; ``columns``
        only, when given); None when nothing is committed."""
        parts = self.part_files()
        latest = self._latest_parts(parts)
        tables = []
        for i, part in enumerate(parts):
            t = self._read_part(part, None if columns is None else [*columns, "job_id"])
            keep = pa.array([latest[j] == i for j in t.column("job_id").to_pylist()], pa.bool_())
            t = t.filter(keep)
            tables.append(t.select(columns) if columns is not None else t)
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def _compact(self) -> None:
        """Rewrite the parts that hold superseded rows (a job re-scored later) without them."""
        parts = self.part_files()
        latest = self._latest_parts(parts)
        for i, part in enumerate(parts):
            t = self._read_part(part, None)
            keep = [latest[j] == i for j in t.column("job_id").to_pylist()]
            if all(keep):
                continue
            if any(keep):  # the rewritten part sorts after every other: its rows stay the ones that count
                with self.fs.open(part, "rb") as f:
                    columns = pq.read_schema(f).names
                self.write_part(t.filter(pa.array(keep, pa.bool_())).select(columns))
            self._retrying(f"remove {posixpath.basename(part)}", lambda part=part: self.fs.rm(part))

    def read_videos(self) -> pa.Table | None:
        """The per-video table; None until the job has finished (see :func:`summarize_videos`)."""
        if not self.fs.exists(self._path("videos.parquet")):
            return None
        with self.fs.open(self._path("videos.parquet"), "rb") as f:
            return pq.read_table(f)

    def finish(self, videos: pa.Table, counts: dict) -> None:
        """Drop superseded rows, write the per-video table, then the marker that says the output is complete."""
        self._compact()
        self._commit(videos, "videos.parquet")
        if self.fs.exists(self._path("_tmp")):
            self._retrying("clear _tmp/", lambda: self.fs.rm(self._path("_tmp"), recursive=True))
        self._retrying(f"write {SUCCESS}", lambda: self.fs.pipe_file(self._path(SUCCESS),
                                                                     json.dumps(counts, indent=2).encode()))


def _store_error(exc: BaseException) -> bool:
    """An error of the store (I/O, network, the object store's service), not of fv2es."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp")


class VideoCollector:
    """Gathers segment rows (which arrive in any order) until each job (a video, or one speaker or
    audio track of it) is whole, then commits whole jobs in parts of ``part_videos`` (or whatever is ready every ``flush_s`` seconds)."""

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
        # A job is one video, or one speaker or audio track of it: keyed by its own id.
        keys = batch.column("job_id").to_pylist()
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

    def _complete(self, key: str) -> None:
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

    def incomplete(self) -> dict[str, int]:
        """Jobs (their ids) with rows still missing (empty after a full run: anything else is a bug)."""
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
