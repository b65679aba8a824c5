"""The file formats of the scoring output's tables, apart from the rules that commit them.

A :class:`PartFormat` turns one Arrow table (with its key/value metadata) into the bytes of one
file object and back. :class:`~fv2es.score.output.ScoreOutput` decides where a file goes, when it
counts as committed and which rows win; it reaches the bytes only through this interface, so a new
format is one class here and one entry in :data:`PART_FORMATS`.
"""

from __future__ import annotations

from typing import IO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq


class PartFormat(Protocol):
    """How one table is stored in one file. ``suffix`` names the files (``.parquet``); a file is
    opened by the caller (any fsspec store) and given to these methods open: ``write`` gets it
    writable, the readers get it readable and seekable."""

    suffix: str

    def write(self, table: pa.Table, f: IO[bytes], metadata: dict[bytes, bytes]) -> None:
        """Write ``table`` to ``f`` with ``metadata`` beside its own schema metadata (these win)."""

    def read(self, f: IO[bytes], columns: list[str] | None = None) -> pa.Table:
        """The table in ``f`` (``columns`` only, in that order, when given), its metadata on its schema."""

    def read_schema(self, f: IO[bytes]) -> pa.Schema:
        """The schema of the table in ``f`` with its metadata, reading no rows where the format allows."""


class ParquetFormat:
    """Parquet (pyarrow's defaults); the metadata is the Parquet file's Arrow schema metadata."""

    suffix = ".parquet"

    def write(self, table: pa.Table, f: IO[bytes], metadata: dict[bytes, bytes]) -> None:
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), f)

    def read(self, f: IO[bytes], columns: list[str] | None = None) -> pa.Table:
        # The file's own reader, not read_table's dataset machinery: a third less memory kept per
        # file read, which counts when a finish reads a summary file per part.
        return pq.ParquetFile(f).read(columns=columns)

    def read_schema(self, f: IO[bytes]) -> pa.Schema:
        return pq.read_schema(f)  # the footer only


PARQUET = ParquetFormat()
PART_FORMATS: dict[str, PartFormat] = {"parquet": PARQUET}  # every format an output can be written in
