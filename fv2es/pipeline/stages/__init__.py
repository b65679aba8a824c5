"""Per-batch stages of the media pipeline, shared by the scoring and preprocessing jobs.

Each is a small picklable class (heavy state built in ``__init__`` or on first use) whose
``__call__`` takes and returns a pyarrow Table, so the same class runs in
``Dataset.map_batches`` and in a unit test. Rows carry their arrays as bytes plus counts
(:mod:`fv2es.pipeline.packing`) and always carry ``status`` / ``error``: a bad input becomes a
row, never an exception out of a stage. Each class declares its name, the config sections its
output depends on, its resources and its columns (:mod:`fv2es.pipeline.spec`). They run in the
order of :data:`MEDIA_STAGES`:

- :class:`Decode` (tasks): job rows -> segment rows with frames + times, waveform, captions;
- :class:`Speakers` (tasks; unless ``speakers.mode`` is ``off``): waveform -> pieces of speech and
  their voice embeddings (labelled per video when the job is numbered);
- :class:`Transcribe` (actor pool; only when ``asr.mode`` is not ``never``): speech-to-text,
  and cutting at the speech and at the voice changes the speaker stage found;
- :class:`Spectrogram` (tasks): waveform -> mel pieces;
- :class:`Faces` (actor pool): frames -> face crops;
- :class:`VoiceFeatures` (before the spectrogram) and :class:`FaceTextFeatures` (last), tasks, only
  with ``data.hand_crafted``: the seed's baselines' feature sequences.
"""

from fv2es.pipeline.stages.decode import DECODED_SCHEMA, Decode
from fv2es.pipeline.stages.faces import Faces
from fv2es.pipeline.stages.handcrafted import FaceTextFeatures, VoiceFeatures
from fv2es.pipeline.stages.speakers import Speakers
from fv2es.pipeline.stages.spectrogram import Spectrogram
from fv2es.pipeline.stages.transcribe import Transcribe

# The media stages, in the order they run. A new stage is one more entry here.
MEDIA_STAGES = (Decode, Speakers, Transcribe, VoiceFeatures, Spectrogram, Faces, FaceTextFeatures)


def media_columns() -> list[str]:
    """The score table's columns that the media stages contribute (before the model's)."""
    return [c for stage in MEDIA_STAGES for c in stage.columns]


def media_timing() -> list[str]:
    """The media stages' ``*_ms`` columns of the score table."""
    return [c for stage in MEDIA_STAGES for c in stage.timing]


def media_config_sections() -> list[str]:
    """The config sections the media stages' output depends on (part of the scoring config digest)."""
    return [s for stage in MEDIA_STAGES for s in stage.config_sections]


def media_pools() -> dict[str, str]:
    """The media stages' actor pools: ``resources`` field prefix -> what the sizing line calls it."""
    return {stage.pool: stage.title for stage in MEDIA_STAGES if stage.pool}


__all__ = ["DECODED_SCHEMA", "MEDIA_STAGES", "Decode", "FaceTextFeatures", "Faces", "Speakers", "Spectrogram",
           "Transcribe", "VoiceFeatures", "media_columns", "media_config_sections", "media_pools", "media_timing"]
