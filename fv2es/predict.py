"""The one inference path: a model in inference form -> emotion probabilities and decisions.

Scoring (:class:`fv2es.score.model_stage.ModelStage`), evaluation (:mod:`fv2es.train.evaluate`)
and the per-epoch validation in training (:mod:`fv2es.train.loop`) all turn rows into
probabilities through a :class:`Predictor`, so a training metric and a score computed on the same
utterance with the same weights cannot disagree. How logits become probabilities (sigmoid or
softmax) and the decision thresholds come from the checkpoint's typed metadata.

The model is an FV2ES checkpoint or the packaged default (:mod:`fv2es.models.packaged`, a
``--checkpoint`` of None or ``packaged:...``): :meth:`Predictor.load` and :func:`read_model_info`
take either. Beside the fused probabilities, :meth:`Predictor.predict_rows_by_modality` gives what
each modality says alone, from the per-modality logits the late fusion fuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from fv2es.emotions import DEFAULT_THRESHOLD, MODALITY_NAMES
from fv2es.models.checkpoint import ACTIVATIONS, default_decision, load_checkpoint, read_checkpoint_info
from fv2es.models.inputs import Collate, ModelInputs
from fv2es.models.packaged import PackagedCollate, PackagedModel, is_packaged, packaged_info
from fv2es.pipeline.packing import unpack, unpack_faces, unpack_pieces


def samples_from_rows(rows: Sequence[dict]) -> list[dict]:
    """Example or segment rows (transcript, packed face crops and spectrogram pieces, and the
    per-frame ``face_mask`` where the row has one) -> the per-utterance samples
    :class:`~fv2es.models.inputs.Collate` takes (it ignores the mask; the packaged model's uses it)."""
    return [{"text": r["text"], "faces": unpack_faces(r["faces"]), "pieces": unpack_pieces(r["pieces"]),
             **({"face_mask": unpack(r["face_mask"], (), np.uint8)} if r.get("face_mask") is not None else {}),
             # the seed's baselines' feature sequences (packed; fv2es.models.handcrafted), where present
             **{k: r[k] for k in ("hcf_text", "hcf_audio", "hcf_visual") if k in r}}
            for r in rows]


def read_model_info(uri: str | None, storage_options: dict | None = None):
    """What the model ``uri`` names says about itself (a :class:`~fv2es.models.checkpoint.CheckpointInfo`),
    without building it: the packaged default for None or ``packaged:...``, else the checkpoint's."""
    if is_packaged(uri):
        return packaged_info()
    return read_checkpoint_info(uri, storage_options)


def fusion_weights(uri: str | None, info, storage_options: dict | None = None) -> dict:
    """How the model fuses its modalities, for the score tables' metadata (``fv2es.fusion_weights``):
    ``{"rule": ..., "weights": {modality name: weight}}``. An FV2ES checkpoint with weighted fusion
    gives its learned weights (read from the file's ``fusion.weight`` tensor, nothing built)."""
    names = [MODALITY_NAMES[m] for m in info.config.fusion_order]
    if is_packaged(uri):
        return {"rule": "mean of the present modalities' probabilities", "weights": {n: 1 / len(names) for n in names}}
    if len(names) > 1 and info.config.fusion == "weighted":
        name = "weighted_fusion.weight" if getattr(info.config, "hand_crafted", False) else "fusion.weight"  # seed names
        w = _read_tensor(uri, name, storage_options).reshape(-1).tolist()
        return {"rule": "weighted sum of the present modalities' logits (an absent one adds 0)",
                "weights": dict(zip(names, w))}
    return {"rule": "mean of the present modalities' logits", "weights": {n: 1 / len(names) for n in names}}


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def _read_tensor(uri: str, name: str, storage_options: dict | None) -> torch.Tensor:
    """One tensor of a safetensors file at fsspec ``uri``, reading its header and that tensor only."""
    import json
    import struct

    import fsspec

    with fsspec.open(uri, "rb", **(storage_options or {})) as f:
        (length,) = struct.unpack("<Q", f.read(8))
        entry = json.loads(f.read(length))[name]
        start, end = entry["data_offsets"]
        f.seek(8 + length + start)
        data = bytearray(f.read(end - start))
    return torch.frombuffer(data, dtype=_DTYPES[entry["dtype"]]).reshape(entry["shape"]).float()


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
        if collate is None and getattr(config, "hand_crafted", False):  # the seed's baselines
            from fv2es.models.handcrafted import model_collate

            collate = model_collate(config)
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

    @classmethod
    def packaged(cls, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Predictor:
        """The packaged default model (:mod:`fv2es.models.packaged`) on ``device``: softmax, argmax."""
        info = packaged_info()
        model = PackagedModel(info.config).eval().to(device)
        return cls(model, info.config, activation="softmax", device=device, dtype=dtype, model_id=info.model_id,
                   collate=PackagedCollate(info.config))

    @classmethod
    def load(cls, uri: str | None, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
             storage_options: dict | None = None, max_pieces: int | None = None,
             max_frames: int | None = None) -> Predictor:
        """The packaged model when ``uri`` is None or ``packaged:...``
        (:data:`fv2es.models.packaged.PACKAGED_URI`), else :meth:`from_checkpoint`."""
        if is_packaged(uri):
            return cls.packaged(device=device, dtype=dtype)
        return cls.from_checkpoint(uri, device=device, dtype=dtype, storage_options=storage_options,
                                   max_pieces=max_pieces, max_frames=max_frames)

    @property
    def modality_names(self) -> list[str]:
        """The names (``text``, ``face``, ``voice``) of the model's modalities, in fusion order."""
        return [MODALITY_NAMES[m] for m in self.config.fusion_order]

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
        return self._activate(logits, -1).cpu().numpy()

    def _activate(self, logits: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.softmax(logits, dim) if self.single_label else torch.sigmoid(logits)

    def predict_rows(self, rows: Sequence[dict]) -> np.ndarray:
        """``(B, E)`` float32 probabilities of example or segment rows (see :func:`samples_from_rows`)."""
        return self.probabilities(self.collate(samples_from_rows(rows)))

    def predict_rows_by_modality(self, rows: Sequence[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The fused ``(B, E)`` probabilities of ``rows`` (the same as :meth:`predict_rows`) and, per
        modality of the model (by name: ``text``, ``face``, ``voice``), what it says alone: its own
        logits through the model's activation, ``(B, E)`` float32, NaN rows where the segment
        lacks it. One forward pass gives both."""
        x = self.collate(samples_from_rows(rows))
        with torch.inference_mode(), self._autocast(), _sliced(self.model, self.slices):
            logits, present = self.model.modality_logits(x.to(self.device))
            fused = self.model.fuse(logits, present).float()
        probs = self._activate(logits.float(), 1).cpu().numpy()  # (B, E, M)
        present = present.cpu().numpy()
        alone = {}
        for j, name in enumerate(self.modality_names):
            p = probs[..., j].astype(np.float32)
            p[~present[:, j]] = np.nan
            alone[name] = p
        return self._activate(fused, -1).cpu().numpy(), alone

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
