"""The spectrogram stage: each row's waveform -> log-mel pieces (``pieces``, ``piece_count``)."""

from __future__ import annotations

import time

import pyarrow as pa

from fv2es.media.spectrogram import SpectrogramConfig, SpectrogramPieces
from fv2es.pipeline.packing import pack, unpack_waveform
from fv2es.pipeline.spec import MediaJob, StageSpec
from fv2es.pipeline.timing import apportion


class Spectrogram:
    """Rows with ``waveform`` -> rows with ``pieces`` (float32 ``(piece_count, 4, 32, 32)``).

    The waveform columns are dropped: nothing after this stage reads the raw audio. A call's time
    is split over its rows by their samples and added to their ``decode_ms`` (the column means
    decode plus spectrogram).
    Stateless and cheap: run as tasks, ``map_batches(Spectrogram(config), batch_size=None)``.
    """

    name, title, pool = "spectrogram", "spectrogram tasks", None
    config_sections = ("spectrogram",)
    columns = ("piece_count",)
    timing = ()  # its time is added to decode_ms

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage (always)."""
        return True

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec:
        """Tasks over whole blocks (Ray may fuse them into the face actors)."""
        return StageSpec(cls.name, cls, (job.cfg.spectrogram,), cpus=job.cfg.resources.spectrogram_cpus)

    def __init__(self, config: SpectrogramConfig):
        self.config = config
        self.pieces = SpectrogramPieces(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        start = time.perf_counter()
        rows = batch.select(["waveform", "waveform_samples"]).to_pylist()
        pieces = self.pieces.many([unpack_waveform(r).copy() for r in rows])  # writable, for torch
        shares = apportion((time.perf_counter() - start) * 1000, [r["waveform_samples"] for r in rows])
        table = batch.drop_columns(["waveform", "waveform_samples"])
        decode_ms = [(ms or 0.0) + float(share) for ms, share in zip(table.column("decode_ms").to_pylist(), shares)]
        table = table.set_column(table.schema.get_field_index("decode_ms"), "decode_ms",
                                 pa.array(decode_ms, pa.float64()))
        table = table.append_column("pieces", pa.array([pack(p) for p in pieces], pa.binary()))
        return table.append_column("piece_count", pa.array([int(p.shape[0]) for p in pieces], pa.int32()))
