"""Read anyone's own data from a manifest: CSV, JSON Lines or Parquet, one row per utterance.

Columns (only ``video_uri`` is required; others are ignored):

============== ===============================================================================
video_uri      video file: an fsspec URI, an absolute path, or a path relative to the manifest
id             unique id; default the video URI, plus ``#t=<start>,<end>`` for a segment
start, end     segment bounds in seconds; empty means the start / end of the video
text           transcript; empty means the text modality is absent
label / labels one name, or several separated by ``;`` or ``|`` (or a list in JSONL/Parquet)
split          ``train``, ``valid`` or ``test``
speaker_side   ``left`` or ``right``
audio_uri      separate audio file (resolved like ``video_uri``)
audio_channel  channel of ``audio_uri`` that holds the speaker (0-based)
============== ===============================================================================

The format follows the extension (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, ``.parquet``/``.pq``;
``.gz`` and other compressions of the text formats are undone first). A bad row raises
:class:`ManifestError` naming the file, the row and the column. The scoring planner reads the
same rows a column at a time (:mod:`fv2es.data.manifest_arrow`), and leaves to this reader what
its checks do not take, so the two never disagree on a row or an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import fsspec
import pyarrow as pa
from fsspec.core import url_to_fs

from fv2es.data.utterance import SIDES, SPLITS, Utterance
from fv2es.errors import InputError

_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4")
_LABEL_SEPARATORS = re.compile(r"[;|]")


class ManifestError(InputError):
    """A manifest that cannot be read; the message names the file, and the row and column."""


def read_manifest(
    uri: str,
    emotions: Sequence[str] | None = None,
    dataset: str = "custom",
    storage_options: Mapping[str, Any] | None = None,
) -> list[Utterance]:
    """Read a manifest into utterances, in row order.

    Args:
        uri: the manifest; any fsspec URI or local path. Its extension picks the format.
        emotions: when given, every label must be one of these names.
        dataset: the ``dataset`` name given to every row.
        storage_options: passed to fsspec.

    Raises:
        ManifestError: unknown format, no ``video_uri`` column, or a bad row (missing video,
            start >= end, unknown label or split, duplicate id, ...).
    """
    return list(iter_manifest(uri, emotions, dataset, storage_options))


def iter_manifest(
    uri: str,
    emotions: Sequence[str] | None = None,
    dataset: str = "custom",
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[Utterance]:
    """:func:`read_manifest` as a stream: the utterances one by one, the file read in pieces, so
    a manifest of millions of rows never sits in memory (what it keeps per row is a hash of its
    id, for the duplicate check). Raises as :func:`read_manifest` does, at the row concerned."""
    options = dict(storage_options or {})
    kind = _format(uri)
    base = _base_dir(uri)
    allowed = None if emotions is None else tuple(emotions)
    seen: set[int] = set()
    for where, row in _rows(uri, kind, options):
        utterance = _utterance(row, where, base, allowed, dataset)
        key = hash(utterance.id)
        if key in seen:
            first = _first_row_of(uri, kind, options, base, utterance.id, where)
            if first is not None:
                raise ManifestError(f"{where}: duplicate id {utterance.id!r} (first at {first})")
        seen.add(key)
        yield utterance


def _first_row_of(uri: str, kind: str, options: dict[str, Any], base: str, uid: str, where: str) -> str | None:
    """Where the first row with id ``uid`` is, before ``where`` (None: a hash collision, no duplicate)."""
    for other, row in _rows(uri, kind, options):
        if other == where:
            return None
        if (_text(row.get("id")) or _utterance(row, other, base, None, "custom").id) == uid:
            return other.rsplit(": ", 1)[-1]
    return None


def _format(uri: str) -> str:
    name = uri.rsplit("/", 1)[-1].lower()
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = posixpath.splitext(name)[1]
    kinds = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".parquet": "parquet",
        ".pq": "parquet",
    }
    if ext not in kinds:
        raise ManifestError(f"{uri}: unknown manifest format {ext!r} (use .csv, .tsv, .jsonl or .parquet)")
    return kinds[ext]


def _rows(uri: str, kind: str, options: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location for messages, row dict) for every data row."""
    if kind == "parquet":
        number = 0
        for batch in parquet_batches(uri, options, 8192):  # a row group at most in memory
            for row in batch.to_pylist():
                number += 1
                yield f"{uri}: row {number}", row
        return
    encoding = _encoding(uri, options)
    with fsspec.open(uri, "rb", compression="infer", **options) as raw:
        # The text in a stream, decoded as decode_text would decode the whole file.
        content = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        yield from _text_rows(uri, kind, content)


def parquet_batches(uri: str, options: dict[str, Any], batch_size: int,
                    columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a Parquet manifest (``columns``: those of them it has; None: all);
    :class:`ManifestError` when it has no ``video_uri`` column."""
    import pyarrow.parquet as pq

    fs, path = url_to_fs(uri, **options)
    with fs.open(path, "rb") as f:
        file = pq.ParquetFile(f)
        names = file.schema_arrow.names
        if "video_uri" not in names:
            raise ManifestError(f"{uri}: no 'video_uri' column (columns: {names})")
        wanted = None if columns is None else [c for c in columns if c in names]
        yield from file.iter_batches(batch_size=batch_size, columns=wanted)


def _encoding(uri: str, options: dict[str, Any]) -> str:
    """The encoding :func:`~fv2es.data.transcripts.decode_text` would pick for the whole file
    (UTF-16 by its BOM, UTF-8 if all of it decodes, else Windows-1252), found in one streaming pass."""
    import codecs

    with fsspec.open(uri, "rb", compression="infer", **options) as f:
        head = f.read(1 << 20)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        try:
            while head:
                decoder.decode(head)
                head = f.read(1 << 20)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig"


def _text_rows(uri: str, kind: str, content) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a CSV, TSV or JSON Lines text stream."""
    if kind == "jsonl":
        for number, line in enumerate(content, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{uri}: line {number}: not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{uri}: line {number}: expected a JSON object, got {type(row).__name__}")
            yield f"{uri}: line {number}", row
        return
    reader = csv.DictReader(content, delimiter="\t" if kind == "tsv" else ",")
    header = [c.strip() for c in reader.fieldnames or ()]
    if "video_uri" not in header:
        raise ManifestError(f"{uri}: no 'video_uri' column (columns: {header})")
    reader.fieldnames = header
    for number, row in enumerate(reader, start=1):
        # CSV cells are strings; an empty cell is an absent value, like null in JSON/Parquet.
        yield f"{uri}: row {number} (line {reader.line_num})", {k: v for k, v in row.items() if k and v != ""}


def _utterance(
    row: Mapping[str, Any], where: str, base: str, emotions: tuple[str, ...] | None, dataset: str
) -> Utterance:
    video = _text(row.get("video_uri"))
    if not video:
        raise ManifestError(f"{where}: column 'video_uri' is missing or empty")
    video = _resolve(base, video)
    start, end = _seconds(row, "start", where), _seconds(row, "end", where)
    if start is not None and end is not None and start >= end:
        raise ManifestError(f"{where}: columns 'start'/'end': start ({start}) must be < end ({end})")
    audio = _text(row.get("audio_uri"))
    try:
        return Utterance(
            id=_text(row.get("id")) or _default_id(video, start, end),
            video_uri=video,
            start=start,
            end=end,
            text=_text(row.get("text")),
            labels=_labels(row, where, emotions),
            speaker_side=_choice(row, "speaker_side", SIDES, where),
            split=_choice(row, "split", SPLITS, where),
            audio_uri=_resolve(base, audio) if audio else None,
            audio_channel=_channel(row, where),
            dataset=dataset,
        )
    except ValueError as e:
        raise ManifestError(f"{where}: {e}") from None


def _labels(row: Mapping[str, Any], where: str, emotions: tuple[str, ...] | None) -> tuple[str, ...]:
    column = "labels" if not _absent(row.get("labels")) else "label"
    value = row.get(column)
    if _absent(value):
        return ()
    if isinstance(value, str):
        items = _LABEL_SEPARATORS.split(value)
    else:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
    labels = tuple(dict.fromkeys(s for s in (str(i).strip() for i in items) if s))  # dedupe, keep order
    if emotions is not None:
        unknown = [label for label in labels if label not in emotions]
        if unknown:
            raise ManifestError(
                f"{where}: column {column!r}: unknown label(s) {unknown} (expected one of {list(emotions)})"
            )
    return labels


def _seconds(row: Mapping[str, Any], column: str, where: str) -> float | None:
    value = row.get(column)
    if _absent(value):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: column {column!r}: not a number of seconds: {value!r}") from None
    if seconds != seconds:  # NaN, e.g. a pandas export of an empty cell
        return None
    if seconds < 0 or seconds == float("inf"):
        raise ManifestError(f"{where}: column {column!r}: must be a finite number >= 0, got {value!r}")
    return seconds


def _choice(row: Mapping[str, Any], column: str, allowed: tuple[str, ...], where: str) -> str | None:
    value = _text(row.get(column))
    if not value:
        return None
    if value not in allowed:
        raise ManifestError(f"{where}: column {column!r}: {value!r} is not one of {list(allowed)}")
    return value


def _channel(row: Mapping[str, Any], where: str) -> int | None:
    value = row.get("audio_channel")
    if _absent(value):
        return None
    try:
        channel = float(value)
    except (TypeError, ValueError):
        channel = -1.0
    if channel < 0 or channel != int(channel):
        raise ManifestError(f"{where}: column 'audio_channel': expected an integer >= 0, got {value!r}")
    return int(channel)


def _absent(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return isinstance(value, str) and not value.strip()


def _text(value: Any) -> str:
    return "" if _absent(value) else str(value).strip()


def _default_id(video: str, start: float | None, end: float | None) -> str:
    # A Media Fragments time range: readable, and unique per (video, segment).
    if start is None and end is None:
        return video
    return f"{video}#t={_short(start)},{_short(end)}"


def _short(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


def _base_dir(uri: str) -> str:
    if "://" in uri:
        return uri.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(uri))


def _resolve(base: str, path: str) -> str:
    """``path`` as is when it is a URI or absolute, else relative to the manifest's folder."""
    if "://" in path or path.startswith("/"):
        return path
    if "://" in base:
        protocol, rest = base.split("://", 1)
        return f"{protocol}://{posixpath.normpath(posixpath.join(rest, path))}"
    return os.path.normpath(os.path.join(base, path))
