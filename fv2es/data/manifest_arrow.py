"""A manifest's planning columns read as Arrow tables: the columnar twin of
:func:`fv2es.data.manifest.iter_manifest`, for the scoring planner.

The file is read in Arrow batches (CSV and TSV with every column a string, JSON Lines with
pyarrow's reader, Parquet a batch of rows at a time, only the columns planning needs), and each
batch is checked and normalised a whole column at a time (values stripped, numbers parsed, paths
resolved against the manifest's folder, default ids). Whatever those checks do not pass (a bad row,
a value they do not parse the way Python does, a file Arrow cannot read) goes to the row reader
from that batch on, so a bad row raises the very :class:`~fv2es.data.manifest.ManifestError` the
row reader raises; files in an encoding other than UTF-8 are read by the row reader throughout.

Rows come out as tables of :data:`ROW_SCHEMA` (absent values: ``""``, ``-1`` or null).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.data import manifest as rows_reader
from fv2es.data.utterance import SIDES, SPLITS

ROW_SCHEMA = pa.schema([("video_uri", pa.string()), ("speaker_side", pa.string()), ("audio_uri", pa.string()),
                        ("audio_channel", pa.int64()), ("id", pa.string()), ("start", pa.float64()),
                        ("end", pa.float64()), ("text", pa.string())])
COLUMNS = ("video_uri", "id", "start", "end", "text", "split", "speaker_side", "audio_uri", "audio_channel")
BLOCK_BYTES = 4 << 20  # a CSV / JSON batch: ~50k rows of a typical manifest
# What Python's str.strip() strips (the row reader strips with it): every c with chr(c).isspace().
_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# The numbers float() reads exactly as Arrow's cast does (ASCII digits); anything else goes to the row reader.
_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NAN = r"(?i)^[+-]?nan$"


class _RowPath(Exception):
    """A batch the vectorised checks do not pass: the row reader takes over from it."""


def iter_manifest_tables(uri: str, storage_options: Mapping[str, Any] | None = None,
                         columnar: bool = True) -> Iterator[pa.Table]:
    """The manifest's rows as tables of :data:`ROW_SCHEMA`, in row order, the file read in
    batches. Rows and errors are those of :func:`~fv2es.data.manifest.iter_manifest`
    (``columnar=False`` reads through it alone); a duplicate id is found once every row is read."""
    options = dict(storage_options or {})
    kind = rows_reader._format(uri)
    done = 0
    hashes: list[np.ndarray] = []
    if columnar and (kind == "parquet" or rows_reader._encoding(uri, options) == "utf-8-sig"):
        base = rows_reader._base_dir(uri)
        try:
            for batch in _batches(uri, kind, options):
                table = _normalised(batch, base)
                hashes.append(np.fromiter(map(hash, table.column("id").to_pylist()), np.int64, table.num_rows))
                done += table.num_rows
                if table.num_rows:
                    yield table
        except (_RowPath, pa.ArrowException, OSError):  # the row reader raises what is wrong, if anything
            pass
        else:
            if _has_duplicates(hashes):  # the row reader names both rows (or finds a hash collision)
                for _ in rows_reader.iter_manifest(uri, storage_options=options):
                    pass
            return
    utterances = rows_reader.iter_manifest(uri, storage_options=options)
    for _ in zip(range(done), utterances):  # the rows already planned, read again for the duplicate check
        pass
    yield from utterance_tables(utterances)


def utterance_tables(utterances: Iterable, rows: int = 50_000) -> Iterator[pa.Table]:
    """Utterances (:class:`~fv2es.data.utterance.Utterance`) as tables of :data:`ROW_SCHEMA`."""
    buffer: list[tuple] = []
    for u in utterances:
        buffer.append((u.video_uri, u.speaker_side or "", u.audio_uri or "",
                       -1 if u.audio_channel is None else u.audio_channel, u.id, u.start, u.end, u.text))
        if len(buffer) >= rows:
            yield _table(buffer)
            buffer = []
    if buffer:
        yield _table(buffer)


def _table(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(zip(*rows), ROW_SCHEMA)], schema=ROW_SCHEMA)


def _has_duplicates(hashes: list[np.ndarray]) -> bool:
    if not hashes:
        return False
    keys = np.sort(np.concatenate(hashes))
    return bool(len(keys) > 1 and (keys[1:] == keys[:-1]).any())


def _batches(uri: str, kind: str, options: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """The file's batches, every column of :data:`COLUMNS` it has (CSV: all as strings)."""
    if kind == "parquet":
        yield from rows_reader.parquet_batches(uri, options, 50_000, COLUMNS)
        return
    with fsspec.open(uri, "rb", compression="infer", **options) as raw:
        if kind == "jsonl":
            import pyarrow.json as pj

            reader = pj.open_json(raw, read_options=pj.ReadOptions(block_size=BLOCK_BYTES, use_threads=False))
        else:
            import pyarrow.csv as pv

            delimiter = "\t" if kind == "tsv" else ","
            header = _header(raw, delimiter)
            raw.seek(0)
            types = {name: pa.string() for name in header}
            reader = pv.open_csv(
                raw,
                read_options=pv.ReadOptions(column_names=header, skip_rows=1, block_size=BLOCK_BYTES,
                                            use_threads=False),
                parse_options=pv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False,
                                                  include_columns=[c for c in COLUMNS if c in header]))
        yield from reader


def _header(raw, delimiter: str) -> list[str]:
    """The CSV header as the row reader reads it (stripped names); unnamed columns get unique
    placeholders, and a header the columnar path cannot take (no ``video_uri``, repeated names)
    goes to the row reader."""
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
    try:
        header = [c.strip() for c in next(csv.reader(text, delimiter=delimiter), [])]
    finally:
        text.detach()
    header = [name or f"\x00{i}" for i, name in enumerate(header)]
    if "video_uri" not in header or len(set(header)) != len(header):
        raise _RowPath
    return header


def _normalised(batch: pa.RecordBatch, base: str) -> pa.Table:
    """A batch of manifest rows as :data:`ROW_SCHEMA`, checked as the row reader checks them.

    Raises:
        _RowPath: a row the checks do not pass, or a value they would not read as Python does.
    """
    n = batch.num_rows
    names = batch.schema.names
    text = {c: _text(batch.column(c)) if c in names else pa.nulls(n, pa.string())
            for c in ("video_uri", "id", "text", "split", "speaker_side", "audio_uri")}
    video = text["video_uri"]
    if video.null_count:
        raise _RowPath  # a row without a video
    for column, allowed in (("speaker_side", SIDES), ("split", SPLITS)):
        values = text[column]
        if values.null_count < n and not pc.all(pc.is_in(values.drop_null(), pa.array(allowed))).as_py():
            raise _RowPath
    start, end = (_seconds(batch.column(c)) if c in names else pa.nulls(n, pa.float64()) for c in ("start", "end"))
    if pc.any(pc.greater_equal(start, end)).as_py():
        raise _RowPath
    channel = _seconds(batch.column("audio_channel"), nan_text=False) if "audio_channel" in names else pa.nulls(n, pa.float64())
    if channel.null_count < n and not pc.all(pc.equal(pc.floor(channel), channel)).as_py():
        raise _RowPath
    video = _resolve(base, video)
    audio = text["audio_uri"]
    audio = _resolve(base, audio) if audio.null_count < n else audio
    return pa.Table.from_arrays([
        video, pc.fill_null(text["speaker_side"], ""), pc.fill_null(audio, ""),
        pc.fill_null(channel.cast(pa.int64()), -1), _ids(text["id"], video, start, end), start, end,
        pc.fill_null(text["text"], ""),
    ], schema=ROW_SCHEMA)


def _text(values: pa.Array) -> pa.Array:
    """A column as the row reader's ``_text`` reads it: strings stripped, empty ones null; integers
    as their digits (``str`` of an int); another type goes to the row reader."""
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.string())
    if pa.types.is_integer(values.type) or pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type):
        values = values.cast(pa.string())
    elif not pa.types.is_string(values.type):
        raise _RowPath
    stripped = pc.utf8_trim(values, characters=_WHITESPACE)
    return pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)


def _seconds(values: pa.Array, nan_text: bool = True) -> pa.Array:
    """A column of numbers as the row reader's ``_seconds`` reads it (absent and NaN: null); a
    negative or infinite number, or text ``float()`` and Arrow might read apart, to the row reader
    (and the text ``nan`` unless ``nan_text``: the row reader's audio channel refuses it)."""
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.float64())
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = _text(values)
        nan = pc.fill_null(pc.match_substring_regex(values, _NAN), False)
        if not nan_text and pc.any(nan).as_py():
            raise _RowPath
        values = pc.if_else(nan, pa.scalar(None, pa.string()), values)
        if not pc.all(pc.match_substring_regex(values.drop_null(), _NUMBER)).as_py() and values.null_count < len(values):
            raise _RowPath
    elif not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
              or pa.types.is_boolean(values.type)):
        raise _RowPath
    seconds = values.cast(pa.float64())
    seconds = pc.if_else(pc.is_nan(seconds), pa.scalar(None, pa.float64()), seconds)
    if pc.any(pc.or_(pc.less(seconds, 0.0), pc.is_inf(seconds))).as_py():
        raise _RowPath
    return seconds


def _resolve(base: str, paths: pa.Array) -> pa.Array:
    """``paths`` as the row reader's ``_resolve`` gives them: a URI or an absolute path as is, a
    relative one joined to ``base``; a plain relative path (no ``.``/``..``/empty segments) by
    concatenation, others one by one in Python."""
    absolute = pc.or_(pc.match_substring(paths, "://"), pc.starts_with(paths, "/"))
    relative = pc.fill_null(pc.invert(absolute), False)
    if not pc.any(relative).as_py():
        return paths
    prefix = rows_reader._resolve(base, "x")[:-1]  # normpath(join(base, p)) for a plain p is this + p
    joined = pc.binary_join_element_wise(pa.scalar(prefix), paths, "")
    resolved = pc.if_else(relative, joined, paths)
    odd = pc.and_(relative, pc.match_substring_regex(paths, r"(^|/)\.\.?(/|$)|//|/$"))
    if not pc.any(odd).as_py():
        return resolved
    where = np.flatnonzero(pc.fill_null(odd, False).to_numpy(zero_copy_only=False))
    values = resolved.to_pylist()
    for i in where:
        values[i] = rows_reader._resolve(base, paths[int(i)].as_py())
    return pa.array(values, pa.string())


def _ids(ids: pa.Array, video: pa.Array, start: pa.Array, end: pa.Array) -> pa.Array:
    """The ``id`` column, a default id (:func:`fv2es.data.manifest._default_id`) where it is empty."""
    missing = pc.is_null(ids)
    if not pc.any(missing).as_py():
        return ids
    whole = pc.and_(missing, pc.and_(pc.is_null(start), pc.is_null(end)))
    ids = pc.if_else(whole, video, ids)
    timed = np.flatnonzero(pc.and_(missing, pc.invert(whole)).to_numpy(zero_copy_only=False))
    if not len(timed):
        return ids
    values = ids.to_pylist()
    for i in timed:
        values[i] = rows_reader._default_id(video[int(i)].as_py(), start[int(i)].as_py(), end[int(i)].as_py())
    return pa.array(values, pa.string())
