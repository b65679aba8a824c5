"""The scoring job's output: parts of whole jobs committed one by one, a per-video table, a marker.

Layout of an output URI (any fsspec path; ``<sfx>`` is the part format's suffix, ``.parquet``)::

    _LEASE                          the running job's lease (see fv2es.score.lease); absent when idle
    _MODEL.json                     the model id and config digest every row was scored with
    segments/part-<run>-<n><sfx>    one row per segment; a job's rows are all in one part
    <table>/part-<run>-<n><sfx>     a table made from that part's segment rows, committed with it
                                    (one folder per name in ``beside``; the scoring job's:
                                    summaries/, one row of sums per job, fv2es.score.summary)
    _jobs<sfx>                      the job index: every part's summary rows with the part's name,
                                    written at the finish (a rerun reads it, not every part)
    videos<sfx>                     one row per video (written when every input is done)
    _SUCCESS                        JSON counts; present only when the output is complete
    _tmp/                           files being written (removed on the next start)

A part is its segment file plus one file per ``beside`` table, all with the part's name. Every
file is written under ``_tmp/`` and moved into place, the segment file last: that move commits
the part, so a part is in ``segments/`` only once all of it is written, and a ``beside`` file
counts only while its segment file exists (a run that died between the two moves leaves one,
which the next start removes). A part only ever holds complete jobs (a job: a video, or one
speaker or audio track of it, named by its ``job_id``), so the set of jobs in ``segments/`` is
exactly the set already done: a rerun skips them and never writes a row twice. A job re-scored by
``--retry-failed`` has rows in two parts: the later part (parts sort by run, then number) wins,
everywhere rows are read, and :meth:`ScoreOutput.finish` rewrites the earlier parts without the
superseded rows (their ``beside`` tables made again from the rows kept). Without ``_SUCCESS`` an
output is incomplete, whatever else is there.

What the driver reads to resume or finish is the job index, not the segments: one row per job
(:meth:`ScoreOutput.job_index`), from ``_jobs`` for the parts it lists and from ``summaries/``
for the parts committed since (a part with neither, written before summaries, gives its job ids
from its segment file's ``job_id`` column). So a rerun on a complete output reads one file and a
listing; a finish adds the new parts' summaries; segment files are read only to rewrite a part
that holds superseded rows (or to find the failed rows ``--retry-failed`` asks about).

The bytes of each file are the business of a :class:`~fv2es.score.formats.PartFormat`; this
module holds the rules and never reads or writes a format itself.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
from fsspec.core import url_to_fs

from fv2es.errors import UserError
from fv2es.pipeline.plan import job_id
from fv2es.score import jobindex
from fv2es.score.formats import PARQUET, PartFormat
from fv2es.score.jobindex import PART
from fv2es.score.lease import OutputLease
from fv2es.storage import redact_text, redact_uri

SUCCESS = "_SUCCESS"
MODEL = "_MODEL.json"
SEGMENTS = "segments"  # the folder of the segment files, and the name of that table in a part
SUMMARIES = "summaries"  # the per-part job summaries (fv2es.score.summary.summarize_jobs)
JOBS = "_jobs"  # the job index written at the finish (its format's suffix appended)
READERS, MERGE = 16, 256  # summaries read at once (a store's latency is the cost), merged into one table
log = logging.getLogger(__name__)


class OutputWriteError(UserError):
    """The output store kept refusing writes (after retries); what was committed stays."""


class OutputMismatch(UserError):
    """The output holds scores of another model or config than this run's."""


class ScoreOutput:
    """Reads and writes one output location: the one owner of the scoring output's layout.

    ``metadata`` (writing only) goes into every file's metadata. A write that fails with a store
    error (an outage, a throttle) is tried again ``write_retries`` times, after 1, 2, 4 ... seconds
    (``backoff_s`` doubled), then ends the job with :class:`OutputWriteError`. ``part_format``
    stores every table (Parquet unless told). ``beside`` maps a table name to a function of a
    part's segment rows: each part is committed with those tables (see the module docstring).
    """

    def __init__(self, uri: str, storage_options: dict | None = None, metadata: dict[str, str] | None = None,
                 write_retries: int = 5, backoff_s: float = 1.0, *, part_format: PartFormat = PARQUET,
                 beside: Mapping[str, Callable[[pa.Table], pa.Table]] | None = None):
        self.uri = uri.rstrip("/")
        self.fs, self.root = url_to_fs(self.uri, **(storage_options or {}))
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.metadata = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.write_retries, self.backoff_s = write_retries, backoff_s
        self.format = part_format
        self.beside = dict(beside or {})
        if SEGMENTS in self.beside:
            raise ValueError(f"{SEGMENTS!r} is the part's own table, not one beside it")
        self._parts = 0
        self._lease: OutputLease | None = None
        self._index: tuple[list[str], pa.Table] | None = None  # (parts, job index) until this run changes a part

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

    # ---- reading ------------------------------------------------------------------------------

    def part_files(self, table: str = SEGMENTS) -> list[str]:
        """The files of ``table`` (the committed segment parts unless told), sorted: oldest
        first, as names start with the run's time. A ``beside`` table's file counts only while
        its part's segment file exists: go from the parts to it with :meth:`beside_file`."""
        folder = self._path(table)
        if not self.fs.exists(folder):
            return []
        return sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(self.format.suffix))

    def beside_file(self, part: str, table: str) -> str:
        """The path of ``table``'s file of the part whose segment file is ``part``."""
        return self._path(table, posixpath.basename(part))

    def _read(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return self.format.read(f, columns)

    def _schema(self, path: str) -> pa.Schema:
        with self.fs.open(path, "rb") as f:
            return self.format.read_schema(f)

    def _read_part(self, part: str, columns: list[str] | None = None) -> pa.Table:
        """A segment part's rows (``columns`` and the job's identity, when given), with ``job_id``."""
        wanted = None if columns is None else [c for c in columns if c != "job_id"] + ["video_uri", "speaker_side"]
        with self.fs.open(part, "rb") as f:
            names = self.format.read_schema(f).names
            f.seek(0)
            if wanted is not None and "job_id" in names:
                wanted.append("job_id")
            table = self.format.read(f, list(dict.fromkeys(wanted)) if wanted is not None else None)
        if "job_id" not in table.column_names:  # written before job ids: a job was a video and its side
            ids = [job_id({"video_uri": v, "speaker_side": s}) for v, s in
                   zip(table.column("video_uri").to_pylist(), table.column("speaker_side").to_pylist())]
            table = table.append_column("job_id", pa.array(ids, pa.string()))
        return table

    def _read_many(self, paths: list[str], columns: list[str] | None = None) -> list[pa.Table]:
        """The tables of ``paths``, read a few at a time (small files: latency bound)."""
        if len(paths) < 2:
            return [self._read(p, columns) for p in paths]
        with ThreadPoolExecutor(min(READERS, len(paths))) as pool:
            return list(pool.map(lambda p: self._read(p, columns), paths))

    def job_index(self) -> tuple[list[str], pa.Table]:
        """(parts, index): the committed segment parts (sorted, as :meth:`part_files`) and one row
        per job of each: ``part`` (its position in ``parts``), ``job_id``, ``video_uri`` and, where
        the part has a summary (``summaries/`` or the ``_jobs`` index), the summary's columns (null
        for a part without one). In part order, each part's jobs in their order there. Reads
        ``_jobs``, the summaries of the parts it does not list, and only the ``job_id`` and
        ``video_uri`` columns of parts with neither; kept until this run commits or removes a part."""
        if self._index is not None:
            return self._index
        parts = self.part_files()
        names = [posixpath.basename(p) for p in parts]
        tables, covered = [], set()
        kept_path = self._path(JOBS + self.format.suffix)
        if parts and self.fs.exists(kept_path):
            kept = self._read(kept_path)
            kept = kept.filter(pc.is_in(kept.column(PART), pa.array(names)))  # parts since rewritten are gone
            covered = set(pc.unique(kept.column(PART)).to_pylist())
            tables.append(kept)
        todo = [p for p, n in zip(parts, names) if n not in covered]
        summarized = {posixpath.basename(p) for p in self.part_files(SUMMARIES)} if todo else set()
        with_summary = [p for p in todo if posixpath.basename(p) in summarized]
        for chunk in (with_summary[at : at + MERGE] for at in range(0, len(with_summary), MERGE)):
            tables.append(jobindex.merged(self._read_many([self.beside_file(p, SUMMARIES) for p in chunk]), chunk))
        make = self.beside.get(SUMMARIES)
        for part in (p for p in todo if posixpath.basename(p) not in summarized):
            # Written before per-part summaries: summarised now when this output makes them, else job ids only.
            table = make(self._read_part(part, None)) if make else self._read_part(part, ["job_id", "video_uri"])
            tables.append(jobindex.named(table.select([c for c in table.column_names if c != "speaker_side"]),
                                 posixpath.basename(part)))
        index = jobindex.assemble(tables, names)
        self._index = (parts, index)
        return self._index

    def done_ids(self, redo: Callable[[str, str], bool] | None = None) -> pa.Array:
        """The ids of the jobs whose rows are committed (a string array), less those with a row
        whose ``(status, error)`` ``redo`` picks (``--retry-failed``: the transient failures).
        Reads the job index; with ``redo``, also the status of the failed rows, in the parts
        holding a failed job only."""
        parts, index = self.job_index()
        latest = index.filter(pa.array(jobindex.latest(index)))
        done = pc.unique(latest.column("job_id"))
        if redo is None or not latest.num_rows:
            return done
        latest = jobindex.maybe_failed(latest)  # summarised parts: only jobs with a failed segment can be redone
        redone = set()
        for p in pc.unique(latest.column(PART)).to_pylist():
            jobs = latest.filter(pc.equal(latest.column(PART), p)).column("job_id")
            t = self._read_part(parts[p], ["job_id", "status", "error"])
            t = t.filter(pc.and_(pc.is_in(t.column("job_id"), jobs), pc.not_equal(t.column("status"), "ok")))
            redone.update(j for j, status, error in zip(*(t.column(c).to_pylist() for c in ("job_id", "status", "error")))
                          if redo(status, error or ""))
        return pc.filter(done, pc.invert(pc.is_in(done, pa.array(sorted(redone), pa.string())))) if redone else done

    def done_jobs(self, redo: Callable[[str, str], bool] | None = None) -> set[str]:
        """:meth:`done_ids` as a set (small outputs and tests)."""
        return set(self.done_ids(redo).to_pylist())

    def segment_schema(self) -> pa.Schema | None:
        """The schema of the segment table (that of its first part); None when nothing is committed."""
        parts = self.part_files()
        return self._schema(parts[0]) if parts else None

    def metadata_of_parts(self) -> dict[str, str]:
        """The ``fv2es.*`` metadata the job wrote into the parts (version, emotions, model, config)."""
        schema = self.segment_schema()
        return {k.decode(): v.decode() for k, v in ((schema.metadata or {}) if schema else {}).items()}

    def iter_segments(self, columns: list[str] | None = None, parts: list[int] | None = None):
        """The committed segment rows that count (a re-scored job's latest rows only; ``columns``
        only, when given), a part at a time (``parts``: those positions only): for reading an
        output of any size in bounded memory."""
        files, _ = self.job_index()
        superseded = jobindex.superseded(self.job_index()[1])
        for i in range(len(files)) if parts is None else parts:
            t = self._read_part(files[i], None if columns is None else [*columns, "job_id"])
            if i in superseded:
                t = t.filter(pc.invert(pc.is_in(t.column("job_id"), superseded[i])))
            yield t.select(columns) if columns is not None else t

    def read_segments(self, columns: list[str] | None = None) -> pa.Table | None:
        """Every committed segment row that counts, in one table (:meth:`iter_segments`; small
        outputs: the report and the job read the job index instead); None when nothing is committed."""
        tables = list(self.iter_segments(columns))
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    def videos(self, emotions: list[str]) -> pa.Table:
        """The per-video table of what is committed, from the job index's summaries
        (:func:`~fv2es.score.summary.combine_jobs`): no segment file is read."""
        from fv2es.score.summary import combine_jobs

        _, index = self.job_index()
        index = index.filter(pa.array(jobindex.latest(index)))
        if index.num_rows and not jobindex.summarized(index):
            raise ValueError("parts without a summary: make this output with beside={SUMMARIES: summarize_jobs}")
        return combine_jobs(index, emotions)

    def read_videos(self) -> pa.Table | None:
        """The per-video table; None until the job has finished (see :func:`~fv2es.score.summary.summarize_videos`)."""
        path = self._path("videos" + self.format.suffix)
        return self._read(path) if self.fs.exists(path) else None

    # ---- writing ------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin (or resume) a run, holding the lease: forget the files an interrupted run left in
        ``_tmp/`` (the lease says no other run is writing), its ``beside`` files without a
        committed part and the completion marker. On an object store nothing else is made (a
        bucket is never created); on disk the folders are."""
        if self.fs.exists(self._path("_tmp")):
            self._retrying("clear _tmp/", lambda: self.fs.rm(self._path("_tmp"), recursive=True))
        if self.is_complete():
            self._retrying(f"remove {SUCCESS}", lambda: self.fs.rm(self._path(SUCCESS)))
        committed = {posixpath.basename(p) for p in self.part_files()}
        for table in self.beside:
            for path in self.part_files(table):
                if posixpath.basename(path) not in committed:
                    self._retrying(f"remove {table}/{posixpath.basename(path)}", lambda p=path: self.fs.rm(p))
        if self.local:
            for folder in (SEGMENTS, *self.beside, "_tmp"):
                self.fs.makedirs(self._path(folder), exist_ok=True)

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

    def _commit(self, tables: Mapping[str, pa.Table], names: Mapping[str, str]) -> dict[str, str]:
        """Write each of ``tables`` to ``_tmp/`` and move it to its name (relative to the output),
        in order: the last move is the commit. Returns the final paths."""
        if self._lease is not None:
            self._lease.check()
        finals = {}
        for key, table in tables.items():
            name = names[key]
            tmp, final = self._path("_tmp", name.replace("/", "_")), self._path(name)

            def write(table=table, tmp=tmp, final=final):
                with self.fs.open(tmp, "wb") as f:
                    self.format.write(table, f, self.metadata)
                self.fs.mv(tmp, final)

            self._retrying(f"write {name}", write)
            finals[key] = final
        return finals

    def write_part(self, segments: pa.Table) -> str:
        """Commit one part of whole jobs' segment rows with its ``beside`` tables; returns the
        path of its segment file."""
        self._parts += 1
        file = f"part-{self.run_id}-{self._parts:05d}{self.format.suffix}"
        tables = {name: make(segments) for name, make in self.beside.items()}
        tables[SEGMENTS] = segments  # last: its move commits the part
        self._index = None
        return self._commit(tables, {name: f"{name}/{file}" for name in tables})[SEGMENTS]

    def _remove_part(self, part: str) -> None:
        """Remove a committed part: its segment file first (that uncommits it), then its ``beside`` files."""
        self._index = None
        for path in (part, *(self.beside_file(part, table) for table in self.beside)):
            if path == part or self.fs.exists(path):
                self._retrying(f"remove {posixpath.basename(path)}", lambda path=path: self.fs.rm(path))

    def compact(self) -> None:
        """Rewrite the parts that hold superseded rows (a job re-scored later) without them; reads
        nothing when nothing was superseded."""
        parts, index = self.job_index()
        for i, old in sorted(jobindex.superseded(index).items()):
            part = parts[i]
            t = self._read_part(part, None)
            keep = pc.invert(pc.is_in(t.column("job_id"), old))
            if pc.any(keep).as_py():  # the rewritten part sorts after every other: its rows stay the ones that count
                columns = self._schema(part).names  # a part written before job ids stays without them
                self.write_part(t.filter(keep).select(columns))
            self._remove_part(part)

    def finish(self, videos: pa.Table, counts: dict) -> None:
        """Drop superseded rows, write the job index (when every part has a summary), the per-video
        table, then the marker that says the output is complete."""
        self.compact()
        parts, index = self.job_index()
        tables, names = {}, {}
        if index.num_rows and jobindex.summarized(index):
            tables["jobs"] = jobindex.with_names(index, [posixpath.basename(p) for p in parts])
            names["jobs"] = JOBS + self.format.suffix
        tables["videos"], names["videos"] = videos, "videos" + self.format.suffix
        self._commit(tables, names)
        if self.fs.exists(self._path("_tmp")):
            self._retrying("clear _tmp/", lambda: self.fs.rm(self._path("_tmp"), recursive=True))
        self._retrying(f"write {SUCCESS}", lambda: self.fs.pipe_file(self._path(SUCCESS),
                                                                     json.dumps(counts, indent=2).encode()))


def _store_error(exc: BaseException) -> bool:
    """An error of the store (I/O, network, the object store's service), not of fv2es."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp")
