"""Speech to text: the text modality from the speech itself (faster-whisper, offline default model).

See :mod:`fv2es.asr.engine` (the transcriber), :mod:`fv2es.asr.models` (where the model comes
from) and :mod:`fv2es.asr.segments` (cutting a video at its speech; words per segment).
"""

from fv2es.asr.config import AsrConfig
from fv2es.asr.engine import Transcriber, Transcript, Utterance, Word, check_model
from fv2es.asr.models import AsrModelError, resolve_model
from fv2es.asr.segments import confidence_of, speech_segments, text_of, words_in_span

__all__ = ["AsrConfig", "AsrModelError", "Transcriber", "Transcript", "Utterance", "Word", "check_model",
           "confidence_of", "resolve_model", "speech_segments", "text_of", "words_in_span"]
