"""Hand-crafted feature sequences from what fv2es shards and score rows hold, for the seed's baselines.

For users without MESM's processed release (:mod:`fv2es.data.hcf` reads that), the baselines
(:mod:`fv2es.models.baselines`) take sequences computed here from the columns the media stages
already produce for FV2ES: the transcript, the 48x48 face crops and the mel-spectrogram pieces.
Nothing new is stored: :class:`HandCraftedCollate` computes them batch by batch, in training,
evaluation and scoring alike (the same :class:`~fv2es.predict.Predictor` path), so a baseline
checkpoint scores raw video as an FV2ES one does; each process keeps what it computed (up to 1 GB,
keyed by a hash of the input), so a run's later epochs reuse the first epoch's features. The widths are :data:`HFC_SIZES` (``-hfcs 384 88
140``), and every dimension is:

**text** (one vector per word piece, 384): the last hidden state of the packaged sentence encoder
(MiniLM-L6, ``model.text_model=minilm``; frozen) at each token of the transcript, ``[CLS]`` and
``[SEP]`` left out, at most ``model.text_max_len`` tokens. An empty transcript has no vectors.

**audio** (one vector per spectrogram frame, 80 per second, 88), from the 128-bin mel power
spectrum of the frame (the pieces are cut back into frames, the zero padding of the last piece
dropped; log-mel pieces, ``spectrogram.log``, are recognised by their negative values and undone):

=========  ==================================================================================
0 - 39     MFCC c0..c39: torchaudio's ``MFCC`` (dB with ``top_db`` 80, orthonormal DCT-II) on
           this mel spectrum, divided by 100 (so values are about +-5)
40         log energy: 10 log10 of the frame's total mel power, divided by 100
41         spectral centroid: the power-weighted mean mel bin, / 127 (0 = lowest, 1 = highest)
42         spectral flatness: geometric / arithmetic mean of the mel power (0 tonal .. 1 noise)
43         peak bin: the strongest mel bin among the lowest 64, / 127: a pitch proxy (the
           shards hold no waveform, so there is no F0 estimate)
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

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from fv2es.errors import ConfigError
from fv2es.models.baselines import SAMPLE_KEYS, HCFCollate, HCFInputs
from fv2es.models.config import ModelConfig
from fv2es.models.geometry import PIECE_SHAPE

HFC_SIZES = (384, 88, 140)  # text, audio, visual widths of the features computed here
N_MFCC = 40
PITCH_BINS = 64  # the peak bin is searched among the lowest this many mel bins
_DB_SCALE = 100.0  # dB quantities are divided by this (fixed, so loudness still tells classes apart)


def pieces_to_frames(pieces: np.ndarray) -> torch.Tensor:
    """Spectrogram pieces (P, 4, 32, 32) -> mel power (frames, 128), the last piece's padding dropped."""
    x = torch.tensor(np.asarray(pieces, dtype=np.float32))  # a copy: arrays from Arrow bytes are read-only
    count, bands, mels_per_band, frames = x.shape
    # (P, bands, F, F) -> (P, n_mels, F) -> (n_mels, P*F): the inverse of SpectrogramPieces._pieces.
    mel = x.reshape(count, bands * mels_per_band, frames).permute(1, 0, 2).reshape(bands * mels_per_band, -1)
    # The padding is exact zeros in every bin (added after the log, when there is one).
    nonzero = (mel != 0).any(dim=0).nonzero()
    mel = mel[:, : int(nonzero[-1]) + 1 if len(nonzero) else 0]
    if (mel < 0).any():  # log(mel + 1e-6) pieces (spectrogram.log); power is never negative
        mel = (mel.exp() - 1e-6).clamp(min=0.0)
    return mel.T.contiguous()


def audio_descriptors(mel: torch.Tensor) -> torch.Tensor:
    """Mel power (frames, 128) -> the 88 audio descriptors per frame of the module doc."""
    import torchaudio.functional as AF

    if mel.shape[0] == 0:
        return torch.zeros((0, HFC_SIZES[1]))
    spec = mel.T  # (n_mels, frames), as torchaudio lays it out
    n_mels = spec.shape[0]
    db = AF.amplitude_to_DB(spec[None], multiplier=10.0, amin=1e-10, db_multiplier=0.0, top_db=80.0)[0]
    dct = AF.create_dct(N_MFCC, n_mels, "ortho")  # (n_mels, n_mfcc), what torchaudio's MFCC uses
    mfcc = (db.T @ dct) / _DB_SCALE  # (frames, 40)
    power = spec.sum(0)
    energy = 10.0 * torch.log10(power + 1e-10) / _DB_SCALE
    bins = torch.arange(n_mels, dtype=spec.dtype)
    centroid = (bins[:, None] * spec).sum(0) / power.clamp(min=1e-10) / (n_mels - 1)
    flatness = torch.exp(torch.log(spec + 1e-10).mean(0)) / (spec.mean(0) + 1e-10)
    peak = spec[:PITCH_BINS].argmax(0).to(spec.dtype) / (n_mels - 1)
    base = torch.cat([mfcc, energy[:, None], centroid[:, None], flatness[:, None], peak[:, None]], dim=1)
    deltas = AF.compute_deltas(base.T[None], win_length=5)[0].T
    return torch.cat([base, deltas], dim=1).float()


class HandCraftedFeatures:
    """Per-utterance samples (``text``, ``faces`` uint8 (N, 48, 48, 3), ``pieces``) -> the same samples with ``hcf_text`` / ``hcf_audio`` / ``hcf_visual`` (float32
    (L, D) each, see the module doc); only ``modalities``' are computed, the others left empty.
    The two frozen networks load on first use; picklable."""

    def __init__(self, text_model: str = "minilm", max_len: int = 100, modalities: str = "tav"):
        self.text_model, self.max_len, self.modalities = text_model, max_len, modalities
        self._text = self._face = None

    def __getstate__(self):
        return {**self.__dict__, "_text": None, "_face": None}

    def _load(self):
        if self._text is None:
            from transformers import AutoModel

            from fv2es.models.expression import load_expression_net
            from fv2es.models.text import _load, load_tokenizer, resolve_text_model

            tokenizer = load_tokenizer(self.text_model)
            encoder = _load(AutoModel.from_pretrained, resolve_text_model(self.text_model), "weights").eval()
            if encoder.config.hidden_size != HFC_SIZES[0]:
                raise ConfigError(f"model.text_model={self.text_model}: hand-crafted text vectors are "
                                  f"{HFC_SIZES[0]}-d (minilm); this encoder gives {encoder.config.hidden_size}")
            self._text, self._face = (tokenizer, encoder), load_expression_net()

    @torch.no_grad()
    def text(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per transcript, (tokens, 384) token vectors (specials left out; empty: (0, 384))."""
        out = [np.zeros((0, HFC_SIZES[0]), np.float32) for _ in texts]
        idx = [i for i, t in enumerate(texts) if t]
        if not idx:
            return out
        self._load()
        tokenizer, encoder = self._text
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
        self._load()
        net = self._face
        x = to_net_input(faces)
        trunk = net.trunk(x)
        pooled, logits = trunk.mean(dim=(2, 3)), net.head(trunk).mean(dim=(2, 3)) / 10.0
        rgb = torch.as_tensor(np.asarray(faces)).permute(0, 3, 1, 2).float()
        means = rgb.mean(dim=(2, 3)) / 255.0
        grey = rgb_to_gray255(rgb)
        grey_std = grey.flatten(1).std(dim=1, keepdim=True) / 255.0
        edges = (grey[..., 1:] - grey[..., :-1]).abs().flatten(1).mean(dim=1, keepdim=True) / 255.0
        return torch.cat([pooled, logits, means, grey_std, edges], dim=1).float().numpy()

    def audio(self, pieces: np.ndarray | None) -> np.ndarray:
        """(frames, 88) audio descriptors of spectrogram pieces (P, 4, 32, 32); none: (0, 88)."""
        if pieces is None or len(pieces) == 0:
            return np.zeros((0, HFC_SIZES[1]), np.float32)
        if tuple(np.shape(pieces)[1:]) != PIECE_SHAPE:
            raise ValueError(f"pieces must be (P, {', '.join(map(str, PIECE_SHAPE))}), got {np.shape(pieces)}")
        return audio_descriptors(pieces_to_frames(pieces)).numpy()

    def __call__(self, samples: Sequence[dict]) -> list[dict]:
        """``samples`` with their hand-crafted sequences added (from :data:`_CACHE` when seen before)."""
        inputs = {"t": [(s.get("text") or "").strip() for s in samples],
                  "a": [s.get("pieces") for s in samples], "v": [s.get("faces") for s in samples]}
        found: dict[str, list] = {}
        for m, values in inputs.items():
            if m not in self.modalities:
                found[m] = [None] * len(samples)  # absent: empty sequences below
                continue
            keys = [_key(m, v) for v in values]
            got = [_CACHE.get(k) for k in keys]
            todo = [i for i, g in enumerate(got) if g is None]
            if todo:
                if m == "t":
                    fresh = self.text([values[i] for i in todo])
                else:
                    fresh = [(self.audio if m == "a" else self.visual)(values[i]) for i in todo]
                for i, f in zip(todo, fresh):
                    got[i] = f
                    _remember(keys[i], f)
            found[m] = got
        empty = {m: np.zeros((0, w), np.float32) for m, w in zip("tav", HFC_SIZES)}
        return [{**s, **{SAMPLE_KEYS[m]: found[m][i] if found[m][i] is not None else empty[m] for m in "tav"}}
                for i, s in enumerate(samples)]


# Features by input, shared by every collate of this process: they are a pure function of the input
# (frozen networks), and recomputing them each epoch would cost more than training the baseline.
_CACHE: dict[tuple[str, bytes], np.ndarray] = {}
_CACHE_BUDGET = 1 << 30  # bytes of features kept at most; beyond it they are computed each time
_cache_bytes = 0


def _key(m: str, value) -> tuple[str, bytes]:
    data = value.encode() if isinstance(value, str) else (b"" if value is None else np.ascontiguousarray(value).tobytes())
    return m, hashlib.blake2b(data, digest_size=16).digest()


def _remember(key: tuple[str, bytes], value: np.ndarray) -> None:
    global _cache_bytes
    if _cache_bytes + value.nbytes <= _CACHE_BUDGET:
        _CACHE[key] = value
        _cache_bytes += value.nbytes


def check_sizes(config: ModelConfig) -> None:
    """Refuse a baseline config whose ``hfc_sizes`` are not the widths of the features computed here."""
    if tuple(config.hfc_sizes) != HFC_SIZES:
        raise ConfigError(f"model.hfc_sizes {list(config.hfc_sizes)}: the features fv2es computes from shards "
                          f"are {' '.join(map(str, HFC_SIZES))} wide (text audio visual); give "
                          f"-hfcs {' '.join(map(str, HFC_SIZES))} (or model.hfc_sizes)")


class HandCraftedCollate:
    """Samples as :func:`fv2es.predict.samples_from_rows` gives them -> :class:`HCFInputs`: the
    collate of a baseline, where FV2ES has :class:`~fv2es.models.inputs.Collate`."""

    def __init__(self, config: ModelConfig):
        check_sizes(config)
        self.features = HandCraftedFeatures(config.text_model, config.text_max_len, config.modalities)
        self.stack = HCFCollate(config.hfc_sizes)

    def __call__(self, samples: Sequence[dict]) -> HCFInputs:
        """Features of ``samples``, packed."""
        return self.stack(self.features(samples))


def model_collate(config: ModelConfig):
    """The collate a model of ``config`` takes its batches through: FV2ES's or a baseline's."""
    if config.hand_crafted:
        return HandCraftedCollate(config)
    from fv2es.models.inputs import Collate

    return Collate(config.text_model, config.text_max_len)
