"""Per-batch stages of the media pipeline, shared by the scoring and preprocessing jobs.

Each is a small picklable class (heavy state built in ``__init__`` or on first use) whose
``__call__`` takes and returns a pyarrow Table, so the same class runs in
``Dataset.map_batches`` and in a unit test. Rows carry their arrays as bytes plus counts
(:mod:`fv2es.pipeline.packing`) and always carry ``status`` / ``error``: a bad input becomes a
row, never an exception out of a stage. The stages run in the order
:func:`fv2es.pipeline.dataset.media_stages` lists them:

- :class:`Decode` (tasks): job rows -> segment rows with frames + times, waveform, captions;
- :class:`Transcribe` (actor pool; only when ``asr.mode`` is not ``never``): speech-to-text,
  and cutting at the speech;
- :class:`Spectrogram` (tasks): waveform -> mel pieces;
- :class:`Faces` (actor pool): frames -> face crops.
"""

from fv2es.pipeline.stages.decode import DECODED_SCHEMA, Decode
from fv2es.pipeline.stages.faces import Faces
from fv2es.pipeline.stages.spectrogram import Spectrogram
from fv2es.pipeline.stages.transcribe import SpeechNumbering, Transcribe

__all__ = ["DECODED_SCHEMA", "Decode", "Faces", "Spectrogram", "SpeechNumbering", "Transcribe"]
