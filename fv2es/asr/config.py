"""The ``asr`` config section: which Whisper model transcribes speech, and how."""

from __future__ import annotations

from dataclasses import dataclass, field

from fv2es.configlib import choice
from fv2es.errors import ConfigError

# CTranslate2's compute types (ctranslate2.get_supported_compute_types lists those a device has).
COMPUTE_TYPES = ("auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class AsrConfig:
    """Speech to text with faster-whisper (CTranslate2). Defaults: the packaged Whisper tiny.en."""

    # auto: transcribe segments whose text comes from neither a manifest nor captions; always; never
    mode: str = field(default="auto", metadata=choice("auto", "always", "never"))
    model: str = ""  # "" = the packaged Whisper tiny.en; else a CTranslate2 Whisper folder (local or fsspec URI)
    language: str = ""  # "" = detect where the model is multilingual (an English-only model: "en")
    compute_type: str = field(default="auto", metadata=choice(*COMPUTE_TYPES))  # auto: int8 CPU, float16 CUDA
    beam_size: int = 5  # beam search width (1 = greedy: faster, a little less accurate)
    vad: bool = True  # Silero VAD (bundled with faster-whisper) first: only speech reaches Whisper
    vad_threshold: float = 0.5  # VAD: speech probability above which a 32 ms frame is speech
    min_silence_ms: int = 500  # VAD: a pause at least this long ends an utterance
    speech_pad_ms: int = 200  # VAD: audio kept on each side of a speech stretch (onsets, trailing sounds)
    cpu_threads: int = 1  # CTranslate2 intra-op threads on CPU (match the CPUs Ray gives the actor)
    no_speech_threshold: float = 0.6  # Whisper: a window this likely silent, with a low log-prob, is dropped
    log_prob_threshold: float = -1.0  # Whisper: mean token log-prob under which that rule applies
    min_confidence: float = 0.3  # utterances with a lower mean word probability are dropped (noise guesses)

    def __post_init__(self):
        if self.beam_size < 1:
            raise ConfigError(f"asr.beam_size must be >= 1, got {self.beam_size!r}")
        if self.cpu_threads < 0:
            raise ConfigError(f"asr.cpu_threads must be >= 0 (0: CTranslate2 decides), got {self.cpu_threads!r}")
        if self.min_silence_ms < 0 or self.speech_pad_ms < 0:
            raise ConfigError("asr.min_silence_ms and asr.speech_pad_ms must be >= 0")
        for name in ("vad_threshold", "no_speech_threshold", "min_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"asr.{name} must be in [0, 1], got {value!r}")
        if self.log_prob_threshold > 0:
            raise ConfigError(f"asr.log_prob_threshold is a log-probability (<= 0), got {self.log_prob_threshold!r}")
        lang = self.language
        if lang and not (lang.isascii() and lang.isalpha() and 2 <= len(lang) <= 3):
            raise ConfigError(f"asr.language: {lang!r} is not a language code such as 'en' or 'de'")
        for name in ("mode", "compute_type"):  # the YAML loader checks choices; direct construction too
            choices = type(self).__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise ConfigError(f"asr.{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")
