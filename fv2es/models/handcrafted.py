"""Hand-crafted feature sequences of an utterance, for the seed's baselines (:mod:`fv2es.models.baselines`).

For users without MESM's processed release (:mod:`fv2es.data.hcf` reads that), ``fv2es preprocess
--hand-crafted`` (``data.hand_crafted=true``) writes three sequences per utterance into the example
shards (``hcf_text``, ``hcf_audio``, ``hcf_visual``, float32 bytes: :data:`fv2es.shards.HCF_COLUMNS`),
computed by the stages of :mod:`fv2es.pipeline.stages.handcrafted` with the functions here; training
and evaluation of a baseline read them back (:class:`ShardFeatureCollate`), and scoring with a
baseline checkpoint runs the same stages on the videos it scores. Shards written without them (or
before they existed) are refused for a baseline (:func:`check_shards`): nothing is computed on the
fly. Shards imported from MESM's release (``--dataset iemocap-hcf``) hold its features instead, of
its widths. fv2es's own are :data:`HFC_SIZES` wide (``-hfcs 384 88 140``), and every dimension is:

**text** (one vector per word piece, 384): the last hidden state of the packaged sentence encoder
(MiniLM-L6, :data:`TEXT_MODEL`; frozen) at each token of the transcript, ``[CLS]`` and ``[SEP]``
left out, at most :data:`TEXT_MAX_LEN` (100) tokens. An empty transcript has no vectors.

**audio** (one vector per frame of the spectrogram's hop, 12.5 ms: 80 per second, 88), from the
16 kHz waveform (NaN -> 0, clipped to [-1, 1], shorter than ``n_fft`` padded to it, as the
spectrogram pieces are) through torchaudio's ``MelSpectrogram`` with ``spectrogram.*``'s
``n_fft``/``win_length``/``hop_length``/``n_mels`` (power, 128 bins):

=========  ==================================================================================
0 - 39     MFCC c0..c39: torchaudio's ``MFCC`` (dB with ``top_db`` 80, orthonormal DCT-II) of
           that mel spectrum, divided by 100 (so values are about +-5)
40         log energy: 10 log10 of the frame's total mel power, divided by 100
41         spectral centroid: the power-weighted mean mel bin, / 127 (0 = lowest, 1 = highest)
42         F0: the fundamental frequency in Hz / 500 where the frame is voiced, else 0: the
           normalised cross-correlation method (NCCF, as in RAPT, Talkin 1995) over lags of
           60 - 500 Hz on a 25 ms window centred on the frame, the smallest lag whose NCCF is
           within 0.9 of the best (against octave errors), refined by a parabola
43         voicing: that lag's NCCF (0 .. 1; a frame is voiced when it is >= 0.5 and the
           window is not silent, RMS above 1e-4)
44 - 87    deltas of 0 - 43: torchaudio's ``compute_deltas`` (window 5) along the frames
=========  ==================================================================================

**visual** (one vector per sampled face frame, 140; the centre-crop fallback frames of a face
not found count as frames, as they do for FV2ES), from the packaged FER2013 face-expression
network (mini-Xception, :mod:`fv2es.models.expression`; frozen) on the crop in grey at 64x64:

=========  ==================================================================================
0 - 127    its last block's map (128 x 4 x 4) averaged over space: the pooled face features
128 - 134  its 7 expression logits (angry, disgust, fear, happy, sad, surprise, neutral), / 10 (so
           their +-8 do not drown the other dimensions)
135 - 137  mean red, green, blue of the crop, / 255
138        standard deviation of the crop's grey values, / 255
139        edge density: mean absolute difference of horizontally adjacent grey pixels, / 255
=========  ==================================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from fv2es.errors import ConfigError, InputError
from fv2es.models import geometry
from fv2es.models.baselines import SAMPLE_KEYS, HCFCollate, HCFInputs
from fv2es.models.config import ModelConfig

HFC_SIZES = (384, 88, 140)  # text, audio, visual widths of the features computed here
TEXT_MODEL, TEXT_MAX_LEN = "minilm", 100  # the text vectors' encoder and most tokens (the presets' too)
N_MFCC = 40
F0_RANGE = (60.0, 500.0)  # Hz searched for the fundamental
F0_SCALE = 500.0  # dimension 42 is F0 / this
VOICED_NCCF = 0.5  # a frame is voiced at or above this normalised cross-correlation
SILENT_RMS = 1e-4  # ... and when its window's RMS is above this
_DB_SCALE = 100.0  # dB quantities are divided by this (fixed, so loudness still tells classes apart)


def _clean(wave: np.ndarray, n_fft: int) -> torch.Tensor:
    """The waveform as the spectrogram pieces take it: NaN -> 0, clipped, at least ``n_fft`` long."""
    x = torch.nan_to_num(torch.tensor(np.asarray(wave, dtype=np.float32))).clamp(-1.0, 1.0)
    return torch.nn.functional.pad(x, (0, n_fft - len(x))) if len(x) < n_fft else x


def pitch(wave: torch.Tensor, sample_rate: int, hop: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame (centred every ``hop`` samples, as the centred STFT's): F0 in Hz (0 unvoiced) and
    the NCCF of the chosen lag (see the module doc, dimensions 42 - 43)."""
    frames = len(wave) // hop + 1
    lo, hi = int(sample_rate / F0_RANGE[1]), int(np.ceil(sample_rate / F0_RANGE[0]))
    span = window + hi + 1
    padded = torch.nn.functional.pad(wave, (window // 2, (frames - 1) * hop + span - window // 2 - len(wave)))
    seg = padded.unfold(0, span, hop)[:frames]  # (F, span): the window, then hi + 1 more samples
    seg = seg - seg[:, :window].mean(dim=1, keepdim=True)
    ref = seg[:, :window]
    size = 1 << int(np.ceil(np.log2(span + window)))
    corr = torch.fft.irfft(torch.fft.rfft(seg, size) * torch.fft.rfft(ref, size).conj(), size)[:, : hi + 2]
    sq = torch.nn.functional.pad(torch.cumsum(seg**2, dim=1), (1, 0))
    energy = sq[:, window : window + hi + 2] - sq[:, : hi + 2]  # energy of seg[lag : lag + window]
    e0 = energy[:, :1]
    nccf = corr / torch.sqrt(e0 * energy).clamp(min=1e-12)
    lags = nccf[:, lo : hi + 1]
    best = lags.max(dim=1, keepdim=True).values
    # the peak of the first run of lags within 0.9 of the best: a period's multiples correlate as
    # well as it does, so the best alone may be an octave down
    near = lags >= 0.9 * best
    steps = torch.arange(lags.shape[1])
    first = near.float().argmax(dim=1, keepdim=True)
    after = ~near & (steps > first)
    end = torch.where(after.any(dim=1, keepdim=True), after.float().argmax(dim=1, keepdim=True), lags.shape[1])
    run = (steps >= first) & (steps < end)
    idx = (torch.where(run, lags, torch.full_like(lags, -2.0)).argmax(dim=1) + lo).clamp(1, hi)
    rows = torch.arange(frames)
    left, mid, right = nccf[rows, idx - 1], nccf[rows, idx], nccf[rows, idx + 1]
    denom = left - 2 * mid + right
    shift = torch.where(denom.abs() > 1e-9, 0.5 * (left - right) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
    f0 = sample_rate / (idx.to(wave.dtype) + shift)
    rms = torch.sqrt(e0[:, 0] / window)
    voicing = mid.clamp(0.0, 1.0) * (rms > SILENT_RMS)
    return torch.where(voicing >= VOICED_NCCF, f0, torch.zeros_like(f0)), voicing


def audio_descriptors(wave: np.ndarray, spectrogram=None) -> np.ndarray:
    """A 16 kHz mono waveform -> the (frames, 88) audio descriptors of the module doc; empty: (0, 88).
    ``spectrogram``: a :class:`~fv2es.media.spectrogram.SpectrogramConfig` (default: the seed's
    geometry, :mod:`fv2es.models.geometry`, which that config's defaults are too)."""
    import torchaudio.functional as AF
    from torchaudio.transforms import MelSpectrogram

    if wave is None or len(wave) == 0:
        return np.zeros((0, HFC_SIZES[1]), np.float32)
    c = spectrogram or _SEED_SPECTROGRAM
    x = _clean(wave, c.n_fft)
    with warnings.catch_warnings():  # 128 bins over 201 FFT bins leave the lowest filters empty (the seed's)
        warnings.simplefilter("ignore", UserWarning)
        spec = MelSpectrogram(c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
                              n_mels=c.n_mels)(x)  # (n_mels, frames), power
    n_mels = spec.shape[0]
    db = AF.amplitude_to_DB(spec[None], multiplier=10.0, amin=1e-10, db_multiplier=0.0, top_db=80.0)[0]
    mfcc = (db.T @ AF.create_dct(N_MFCC, n_mels, "ortho")) / _DB_SCALE  # what torchaudio's MFCC computes
    power = spec.sum(0)
    energy = 10.0 * torch.log10(power + 1e-10) / _DB_SCALE
    bins = torch.arange(n_mels, dtype=spec.dtype)
    centroid = (bins[:, None] * spec).sum(0) / power.clamp(min=1e-10) / (n_mels - 1)
    f0, voicing = pitch(x, c.sample_rate, c.hop_length, c.win_length)
    base = torch.cat([mfcc, energy[:, None], centroid[:, None], (f0 / F0_SCALE)[:, None], voicing[:, None]], dim=1)
    deltas = AF.compute_deltas(base.T[None], win_length=5)[0].T
    return torch.cat([base, deltas], dim=1).float().numpy()


_SEED_SPECTROGRAM = SimpleNamespace(sample_rate=geometry.SAMPLE_RATE, n_fft=geometry.N_FFT, win_length=geometry.N_FFT,
                                    hop_length=geometry.HOP_LENGTH, n_mels=geometry.N_MELS)

# The frozen networks, loaded once per process (a task stage runs many times in one Ray worker).
_NETWORKS: dict[str, tuple] = {}


def _networks(text_model: str):
    if text_model not in _NETWORKS:
        from transformers import AutoModel

        from fv2es.models.expression import load_expression_net
        from fv2es.models.text import _load, load_tokenizer, resolve_text_model

        tokenizer = load_tokenizer(text_model)
        encoder = _load(AutoModel.from_pretrained, resolve_text_model(text_model), "weights").eval()
        if encoder.config.hidden_size != HFC_SIZES[0]:
            raise ConfigError(f"model.text_model={text_model}: hand-crafted text vectors are "
                              f"{HFC_SIZES[0]}-d (minilm); this encoder gives {encoder.config.hidden_size}")
        _NETWORKS[text_model] = (tokenizer, encoder, load_expression_net())
    return _NETWORKS[text_model]


class HandCraftedFeatures:
    """The text and visual sequences of the module doc (the frozen networks load on first use)."""

    def __init__(self, text_model: str = "minilm", max_len: int = 100):
        self.text_model, self.max_len = text_model, max_len

    @torch.no_grad()
    def text(self, texts: Sequence[str | None]) -> list[np.ndarray]:
        """Per transcript, (tokens, 384) token vectors (specials left out; empty: (0, 384))."""
        texts = [(t or "").strip() for t in texts]
        out = [np.zeros((0, HFC_SIZES[0]), np.float32) for _ in texts]
        idx = [i for i, t in enumerate(texts) if t]
        if not idx:
            return out
        tokenizer, encoder, _ = _networks(self.text_model)
        tok = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_len + 2,
                        return_tensors="pt", return_special_tokens_mask=True)
        special = tok.pop("special_tokens_mask").bool()
        hidden = encoder(**{k: v for k, v in tok.items() if k in ("input_ids", "attention_mask")}).last_hidden_state
        keep = tok["attention_mask"].bool() & ~special
        for j, i in enumerate(idx):
            out[i] = hidden[j][keep[j]][: self.max_len].float().numpy()
        return out

    @torch.no_grad()
    def visual(self, faces: np.ndarray | None) -> np.ndarray:
        """(frames, 140) face features of uint8 crops (N, 48, 48, 3); none: (0, 140)."""
        from fv2es.models.expression import rgb_to_gray255, to_net_input

        if faces is None or len(faces) == 0:
            return np.zeros((0, HFC_SIZES[2]), np.float32)
        net = _networks(self.text_model)[2]
        faces = faces if faces.flags.writeable else faces.copy()  # rows' bytes are read-only; torch warns
        trunk = net.trunk(to_net_input(faces))
        pooled, logits = trunk.mean(dim=(2, 3)), net.head(trunk).mean(dim=(2, 3)) / 10.0
        rgb = torch.as_tensor(np.asarray(faces)).permute(0, 3, 1, 2).float()
        means = rgb.mean(dim=(2, 3)) / 255.0
        grey = rgb_to_gray255(rgb)
        grey_std = grey.flatten(1).std(dim=1, correction=0, keepdim=True) / 255.0
        edges = (grey[..., 1:] - grey[..., :-1]).abs().flatten(1).mean(dim=1, keepdim=True) / 255.0
        return torch.cat([pooled, logits, means, grey_std, edges], dim=1).float().numpy()


def check_shards(config: ModelConfig, info: dict, uri: str) -> None:
    """Refuse to train or evaluate a baseline on shards (their ``metadata.json``: ``info``) that hold
    no hand-crafted features, or features of other widths than ``model.hfc_sizes`` (``-hfcs``): the
    features fv2es computes are :data:`HFC_SIZES` wide, MESM's as its files say (300 144 35 for
    IEMOCAP with ``-aft 0``)."""
    written = (info.get("hand_crafted") or {}).get("sizes")
    if not written:
        raise InputError(f"{uri}: these shards hold no hand-crafted features, which the seed's baselines "
                         f"({config.arch}) read; write them with `fv2es preprocess ... --hand-crafted`")
    if tuple(written) != tuple(config.hfc_sizes):
        shown = " ".join(map(str, written))
        raise ConfigError(f"-hfcs {' '.join(map(str, config.hfc_sizes))} (model.hfc_sizes): the hand-crafted "
                          f"features of {uri} are {shown} wide (text audio visual); give -hfcs {shown}")


def unpack_features(data: bytes | None, width: int) -> np.ndarray:
    """A shard's ``hcf_*`` bytes -> float32 (L, width); None or empty -> (0, width)."""
    if not data:
        return np.zeros((0, width), np.float32)
    return np.frombuffer(data, dtype=np.float32).reshape(-1, width)


class ShardFeatureCollate:
    """Example rows with the ``hcf_*`` columns (as dicts) -> :class:`HCFInputs`: the collate of a
    baseline, where FV2ES has :class:`~fv2es.models.inputs.Collate`. Samples that already hold
    arrays under those keys (:data:`~fv2es.models.baselines.SAMPLE_KEYS`) are taken as they are."""

    def __init__(self, config: ModelConfig):
        self.stack = HCFCollate(config.hfc_sizes)
        self.sizes = dict(zip("tav", config.hfc_sizes))

    def __call__(self, samples: Sequence[dict]) -> HCFInputs:
        """Features of ``samples``, packed."""
        out = []
        for s in samples:
            if not any(key in s for key in SAMPLE_KEYS.values()):  # a pipeline without the feature stages
                raise ValueError("a baseline's rows carry no hcf_* columns: run the hand-crafted feature stages "
                                 "(data.hand_crafted=true; fv2es.pipeline.stages.handcrafted)")
            out.append({key: (s.get(key) if not isinstance(s.get(key), (bytes, type(None)))
                              else unpack_features(s.get(key), self.sizes[m])) for m, key in SAMPLE_KEYS.items()})
        return self.stack(out)


def model_collate(config: ModelConfig):
    """The collate a model of ``config`` takes its batches through: FV2ES's or a baseline's."""
    if config.hand_crafted:
        return ShardFeatureCollate(config)
    from fv2es.models.inputs import Collate

    return Collate(config.text_model, config.text_max_len)
