"""The one inference path: a model in inference form -> emotion probabilities and decisions.

Scoring (:class:`fv2es.score.model_stage.ModelStage`), evaluation (:mod:`fv2es.train.evaluate`)
and the per-epoch validation in training (:mod:`fv2es.train.loop`) all turn rows into
probabilities through a :class:`Predictor`, so a training metric and a score computed on the same
utterance with the same weights cannot disagree. How logits become probabilities (sigmoid or
softmax) and the decision thresholds come from the checkpoint's typed metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from fv2es.emotions import DEFAULT_THRESHOLD
from fv2es.models.checkpoint import ACTIVATIONS, default_decision, load_checkpoint
from fv2es.models.inputs import Collate, ModelInputs
from fv2es.pipeline.packing import unpack_faces, unpack_pieces


def samples_from_rows(rows: Sequence[dict]) -> list[dict]:
    """Example or segment rows (transcript, packed face crops and spectrogram pieces) -> the
    per-utterance samples :class:`~fv2es.models.inputs.Collate` takes."""
    return [{"text": r["text"], "faces": unpack_faces(r["faces"]), "pieces": unpack_pieces(r["pieces"])}
            for r in rows]


class Predictor:
    """A model in inference form (eval, RepVGG folded) with its activation and thresholds.

    ``dtype`` is the compute dtype of the forward pass: None (default) runs bf16 autocast on CUDA
    and float32 on CPU; ``torch.float32`` never autocasts; ``torch.bfloat16`` autocasts on any
    device. Probabilities are always returned as float32.

    ``max_pieces`` / ``max_frames`` (None: no limit) bound how many spectrogram pieces / face
    frames the audio / visual encoder takes in one call: a larger batch runs them in slices (the
    encoders work per piece and per frame, so the result is the same), which bounds their
    activation memory whatever the length of a segment.
    """

    def __init__(self, model: torch.nn.Module, config, *, activation: str = "sigmoid",
                 thresholds: Sequence[float] | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, model_id: str = "", collate: Collate | None = None,
                 max_pieces: int | None = None, max_frames: int | None = None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.model, self.config, self.activation, self.model_id = model, config, activation, model_id
        self.decision = default_decision(activation)  # from_checkpoint: the checkpoint's own (DECISIONS)
        self.emotions = list(config.emotions)
        # One default for a checkpoint without validated thresholds: the metrics' own.
        given = list(thresholds) if thresholds is not None else []
        self.thresholds = np.asarray(given or [DEFAULT_THRESHOLD] * len(self.emotions), dtype=np.float64)
        if len(self.thresholds) != len(self.emotions):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.emotions)} emotions")
        self.device = torch.device(device)
        self.dtype = dtype
        self.collate = collate or Collate(config.text_model, config.text_max_len)
        self.slices = {"audio": max_pieces, "visual": max_frames}

    @classmethod
    def from_checkpoint(cls, uri: str, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        storage_options: dict | None = None, max_pieces: int | None = None,
                        max_frames: int | None = None) -> Predictor:
        """Load the checkpoint at ``uri`` in inference form onto ``device``."""
        ckpt = load_checkpoint(uri, device=device, storage_options=storage_options)
        predictor = cls(ckpt.model, ckpt.config, activation=ckpt.activation, thresholds=ckpt.thresholds,
                        device=device, dtype=dtype, model_id=ckpt.model_id, max_pieces=max_pieces, max_frames=max_frames)
        predictor.decision = ckpt.decision
        return predictor

    @property
    def single_label(self) -> bool:
        """Softmax models predict one emotion per utterance (the argmax)."""
        return self.activation == "softmax"

    def _autocast(self):
        if self.dtype is None:
            enabled, dtype = self.device.type == "cuda", torch.bfloat16
        else:
            enabled, dtype = self.dtype != torch.float32, self.dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def probabilities(self, inputs: ModelInputs) -> np.ndarray:
        """``(B, E)`` float32 probabilities of a collated batch."""
        with torch.inference_mode(), self._autocast(), _sliced(self.model, self.slices):
            logits = self.model(inputs.to(self.device)).float()
        probs = torch.softmax(logits, -1) if self.single_label else torch.sigmoid(logits)
        return probs.cpu().numpy()

    def predict_rows(self, rows: Sequence[dict]) -> np.ndarray:
        """``(B, E)`` float32 probabilities of example or segment rows (see :func:`samples_from_rows`)."""
        return self.probabilities(self.collate(samples_from_rows(rows)))

    def decide(self, probs: np.ndarray) -> list[list[str]]:
        """The emotions predicted for each row of ``probs``: with the ``argmax`` decision (a softmax
        model, or one trained on single-label data) the most probable one; else every emotion whose
        probability is strictly above its validated threshold (as the metrics count it)."""
        if self.decision == "argmax":
            return [[self.emotions[int(np.argmax(p))]] for p in probs]
        return [[e for e, on in zip(self.emotions, row) if on] for row in np.asarray(probs) > self.thresholds]


@contextmanager
def _sliced(model: torch.nn.Module, limits: dict[str, int | None]):
    """Within the block, each per-item encoder ``model.<name>`` (``audio``: per piece, ``visual``:
    per frame) called on more than ``limits[name]`` items runs on slices of that many and
    concatenates: the same features, with activations for at most that many items at a time."""
    patched = []
    for name, limit in limits.items():
        branch = getattr(model, name, None)
        if branch is None or not limit:
            continue
        forward = branch.forward

        def sliced(x, forward=forward, limit=limit):
            if x.shape[0] <= limit:
                return forward(x)
            return torch.cat([forward(x[i : i + limit]) for i in range(0, x.shape[0], limit)])

        branch.forward = sliced  # an instance attribute: shadows the class's forward, nothing else
        patched.append(branch)
    try:
        yield
    finally:
        for branch in patched:
            del branch.forward
