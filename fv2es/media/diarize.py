"""Who speaks when: speaker turns in a recording, from voice embeddings (:mod:`fv2es.media.voices`).

1. **Speech**: 10 ms frames louder than :data:`SPEECH_DB` below the recording's loud frames (its
   95th percentile) and above an absolute floor; pauses shorter than ``min_pause_s`` are bridged,
   bursts shorter than ``min_speech_s`` dropped.
2. **Pieces**: each stretch of speech is cut where the voice changes: windows ``window_s`` long
   every ``step_s`` are embedded by the GE2E encoder, and a point where the window before and the
   window after it differ by more than ``change`` (cosine distance, the most different point
   within a window either side) is a cut. A piece's embedding is the mean of its windows'.
3. **Clusters**: the pieces (of one recording, or of all the segments of one video:
   :func:`label_job`) are clustered agglomeratively (average linkage on cosine distance) until
   the closest two clusters are ``threshold`` apart, so the number of voices need not be known.
4. **Turns**: consecutive pieces of one cluster are one turn. Labels are ``S0``, ``S1``, ... in
   order of first appearance.

Pieces are clustered, not single windows. On the test voices two 1 s windows of one voice are a
median 0.19-0.21 apart (90th percentile 0.28), of two voices 0.37-0.53 (10th percentile 0.30):
they overlap; whole sentences of one voice are 0.12-0.15 apart and of two voices at least 0.30,
and :data:`THRESHOLD` sits between. Measured (tests/media/test_diarize.py): two espeak-ng voices
(a man's and a woman's) and a deeper third one taking turns get the right labels with every
boundary within 0.27 s (0 s with a pause between turns); espeak-ng's two male variants
(``en-us+m3`` and ``en-gb+m7``: 0.09 apart, as close as one voice to itself) are one speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fv2es.configlib import choice

if TYPE_CHECKING:  # the encoder imports torch; the config that imports this module must not
    from fv2es.media.voices import VoiceEncoder

HOP, SAMPLE_RATE = 160, 16000  # the voice encoder's mel hop and rate (fv2es.media.voices)

FRAME_S = HOP / SAMPLE_RATE  # 10 ms
THRESHOLD = 0.25  # cosine distance; on the test voices: sentences of one voice 0.12-0.15, of two >= 0.30
SPEECH_DB = 30.0  # a frame this far below the loud frames is not speech
FLOOR_RMS = 0.003  # nor one this quiet (about -50 dBFS), however quiet the recording


@dataclass(frozen=True)
class SpeakersConfig:
    """Options of :func:`diarize` and the scoring pipeline's speaker stage (config section ``speakers``)."""

    mode: str = field(default="auto", metadata=choice("auto", "off"))  # off: no speaker labels (saves the stage)
    window_s: float = 1.0  # length of an embedded window
    step_s: float = 0.1  # window hop
    change: float = 0.35  # cosine distance of the windows either side of a voice change within speech
    threshold: float = THRESHOLD  # cosine distance at which two clusters of pieces stop merging
    min_pause_s: float = 0.25  # shorter silences are bridged
    min_speech_s: float = 0.2  # shorter bursts are not speech

    def __post_init__(self):
        if not (0 < self.step_s <= self.window_s and 0 < self.change < 2 and 0 < self.threshold < 2):
            raise ValueError("speakers: need 0 < step_s <= window_s, 0 < change < 2 and 0 < threshold < 2")


@dataclass(frozen=True)
class Turn:
    """One speaker's stretch of speech: seconds from the start of the audio, and the label."""

    start: float
    end: float
    speaker: str


def speech_frames(audio: np.ndarray, config: SpeakersConfig = SpeakersConfig()) -> np.ndarray:
    """Which 10 ms frames of ``audio`` (16 kHz) are speech, bool (n_frames,)."""
    n = len(audio) // HOP
    if n == 0:
        return np.zeros(0, bool)
    rms = np.sqrt(np.mean(np.square(audio[:n * HOP].reshape(n, HOP), dtype=np.float64), axis=1))
    loud = np.percentile(rms, 95)
    speech = (rms > max(FLOOR_RMS, loud * 10 ** (-SPEECH_DB / 20)))
    speech = _fill(speech, False, round(config.min_pause_s / FRAME_S))  # bridge pauses
    return _fill(speech, True, round(config.min_speech_s / FRAME_S))  # drop bursts


def _fill(mask: np.ndarray, value: bool, shorter_than: int) -> np.ndarray:
    """``mask`` with its inner runs of ``value`` shorter than ``shorter_than`` frames flipped."""
    out = mask.copy()
    for a, b in _runs(mask == value):
        if b - a < shorter_than and (value or (a > 0 and b < len(mask))):
            out[a:b] = not value
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The [start, end) index runs where ``mask`` is true."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _starts(a: int, b: int, size: int, step: int) -> list[int]:
    """Window starts every ``step`` frames over [a, b), the last one ending at ``b``."""
    if b - a <= size:
        return [a]
    starts = list(range(a, b - size + 1, step))
    return starts + [b - size] if starts[-1] + size < b else starts


def change_points(embeddings: np.ndarray, starts: list[int], size: int, threshold: float) -> list[int]:
    """Frames where the voice changes within one stretch of speech: where the window just before
    and the window just after differ by more than ``threshold`` (cosine distance), at the most
    different point within a window's length either side."""
    at = {s: i for i, s in enumerate(starts)}
    points, dist = [], []
    for i, s in enumerate(starts):
        j = at.get(s + size)
        if j is not None:
            points.append(s + size)
            dist.append(1.0 - float(embeddings[i] @ embeddings[j]))
    cuts = []
    reach = size // max(1, starts[1] - starts[0]) + 1 if len(starts) > 1 else 1  # points a window away
    for k, (p, d) in enumerate(zip(points, dist)):
        near = [dist[m] for m in range(max(0, k - reach), min(len(points), k + reach + 1))
                if abs(points[m] - p) <= size and m != k]
        if d > threshold and all(d >= x for x in near):
            cuts.append(p)
    return cuts


def pieces(speech: np.ndarray, audio: np.ndarray, encoder: VoiceEncoder, config: SpeakersConfig):
    """The speech cut at pauses and at voice changes: frame spans, and each one's embedding (the
    normalised mean of the windows inside it; a piece shorter than a window is embedded whole)."""
    size, step = round(config.window_s / FRAME_S), max(1, round(config.step_s / FRAME_S))
    regions = _runs(speech)
    starts = [_starts(a, b, size, step) for a, b in regions]
    spans = [(s, min(s + size, b)) for (a, b), ss in zip(regions, starts) for s in ss]
    emb = embed_spans(audio, spans, encoder) if spans else np.zeros((0, 256), np.float32)
    out_spans, out_emb, k = [], [], 0
    for (a, b), ss in zip(regions, starts):
        e = emb[k:k + len(ss)]
        k += len(ss)
        cuts = change_points(e, ss, size, config.change) if len(ss) > 1 else []
        bounds = [a, *cuts, b]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            inside = [i for i, s in enumerate(ss) if s >= lo and s + size <= hi]
            mean = e[inside].mean(axis=0) if inside else embed_spans(audio, [(lo, hi)], encoder)[0]
            out_spans.append((lo, hi))
            out_emb.append(mean / np.linalg.norm(mean))
    return out_spans, np.array(out_emb, np.float32).reshape(-1, 256)


def cluster(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """A label per embedding: average-linkage clusters cut at cosine distance ``threshold``;
    labels in order of first use."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), int)
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=threshold).fit_predict(embeddings)
    return _first_seen(labels)


def _first_seen(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in order of first appearance."""
    order = {}
    for x in labels.tolist():
        order.setdefault(x, len(order))
    return np.array([order[x] for x in labels.tolist()], int)


def turns_of(spans: list[tuple[int, int]], labels: np.ndarray) -> list[Turn]:
    """Consecutive pieces of one label joined into turns (the pauses within them kept inside)."""
    runs: list[list] = []
    for (a, b), label in zip(spans, labels.tolist()):
        if runs and runs[-1][2] == label:
            runs[-1][1] = b
        else:
            runs.append([a, b, label])
    return [Turn(round(a * FRAME_S, 3), round(b * FRAME_S, 3), f"S{k}") for a, b, k in runs]


def diarize(audio: np.ndarray, encoder: VoiceEncoder, config: SpeakersConfig = SpeakersConfig()) -> list[Turn]:
    """The speaker turns of ``audio`` (16 kHz mono float), in time order."""
    audio = np.asarray(audio, np.float32)
    spans, embeddings = pieces(speech_frames(audio, config), audio, encoder, config)
    if not spans:
        return []
    return turns_of(spans, cluster(embeddings, config.threshold))


def voice_changes(spans: np.ndarray, embeddings: np.ndarray, threshold: float = THRESHOLD) -> list[tuple[float, float]]:
    """Where the voice changes in one stretch of audio: its pieces (``spans``, (k, 2) seconds;
    ``embeddings``, (k, 256)) clustered as :func:`label_job` clusters a video's, and for each two
    consecutive pieces of different clusters, ``(end of the first, start of the second)`` (equal
    at a change within speech; a pause between them lies between the two).

    The cutting of segments at speaker changes (``segments.mode=auto``) uses it on one decoded
    chunk, before the job is whole; the labels a segment finally gets are the video's
    (:func:`label_job`), so on a voice near ``threshold`` the two can disagree."""
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    if len(spans) < 2:
        return []
    order = np.argsort(spans[:, 0], kind="stable")
    spans = spans[order]
    labels = cluster(np.asarray(embeddings, np.float32).reshape(-1, 256)[order], threshold)
    return [(float(spans[k, 1]), float(spans[k + 1, 0])) for k in range(len(spans) - 1) if labels[k] != labels[k + 1]]


def embed_spans(audio: np.ndarray, spans: list[tuple[int, int]], encoder: VoiceEncoder) -> np.ndarray:
    """The GE2E embedding of each frame span of ``audio`` (spans of one length run as one batch)."""
    import torch

    mels = encoder.mels(audio)
    out = np.zeros((len(spans), 256), np.float32)
    by_len: dict[int, list[int]] = {}
    for i, (a, b) in enumerate(spans):
        by_len.setdefault(b - a, []).append(i)
    with torch.no_grad():
        for length, idx in by_len.items():
            for k in range(0, len(idx), 64):
                chunk = idx[k:k + 64]
                batch = torch.stack([mels[spans[i][0]:spans[i][0] + length] for i in chunk])
                out[chunk] = encoder.net(batch).numpy()
    return out


def label_job(spans: list[np.ndarray], embeddings: list[np.ndarray], threshold: float = THRESHOLD):
    """Speaker labels over one video: the pieces of all its segments clustered together.

    ``spans``: per segment, its pieces' (start, end) seconds, (k, 2); ``embeddings``: per segment,
    theirs, (k, 256). Returns per segment its ``speaker`` (the label with the most speech in it;
    None without speech) and its turns (:class:`Turn`, consecutive pieces of one label joined).
    Labels are ``S0``, ``S1``, ... in order of first appearance in time.
    """
    flat = [(float(a), float(b), seg, i) for seg, sp in enumerate(spans) for i, (a, b) in enumerate(sp)]
    if not flat:
        return [None] * len(spans), [[] for _ in spans]
    order = sorted(range(len(flat)), key=lambda k: flat[k][0])
    emb = np.concatenate([np.asarray(e, np.float32).reshape(-1, 256) for e in embeddings])
    labels = np.empty(len(flat), int)
    labels[order] = cluster(emb[order], threshold)
    speakers, turns = [], []
    for seg in range(len(spans)):
        mine = [(flat[k][0], flat[k][1], int(labels[k])) for k in order if flat[k][2] == seg]
        time = {}
        for a, b, label in mine:
            time[label] = time.get(label, 0.0) + (b - a)
        speakers.append(f"S{max(time, key=time.get)}" if time else None)
        joined: list[list] = []
        for a, b, label in mine:
            if joined and joined[-1][2] == label:
                joined[-1][1] = b
            else:
                joined.append([a, b, label])
        turns.append([Turn(round(a, 3), round(b, 3), f"S{k}") for a, b, k in joined])
    return speakers, turns

