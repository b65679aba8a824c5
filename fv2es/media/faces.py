"""Face crops for the visual branch: batched MTCNN detection -> 48x48 RGB crops + ``face_found``.

Follows the seed (MODEL.md): facenet-pytorch's MTCNN with ``image_size=48, margin=2,
post_process=False, keep_all=True``; no face -> a 48x48 centre crop. Two things differ on purpose:

- Detection runs on a copy of the frames downscaled to at most ``detect_max_side`` pixels (MTCNN's
  image pyramid cost grows with the frame area), the boxes are scaled back, and the crop is taken
  from the full-resolution frame, so crops stay sharp on 1080p input.
- The fallback centre crop is the square of side ``min(H, W)`` at the centre, resized to 48x48
  (the seed sliced a few pixels off-centre).

Crops are resized with area interpolation (what facenet-pytorch uses for tensors), rounded to
uint8; the detection copy uses antialiased bilinear (fast on uint8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fv2es.models.geometry import FACE_SIZE

if TYPE_CHECKING:  # torch is imported where it computes: the config and decode tasks never do
    import torch

SELECT_MODES = ("largest", "confident", "left", "right")


@dataclass(frozen=True)
class FaceConfig:
    """Options of :class:`FaceCropper`; the defaults are the seed's."""

    image_size: int = FACE_SIZE  # side of the square output crop, pixels (the model's face input)
    margin: int = 2  # margin around the box, in pixels of the output crop (facenet semantics)
    detect_max_side: int = 320  # frames are downscaled to at most this longest side for detection
    min_face_size: int = 20  # smallest face MTCNN looks for, in pixels of the detection image
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-net score thresholds
    select: str = "largest"  # which face: largest | confident | left | right (half of the frame)
    device: str = "cpu"  # torch device for MTCNN, e.g. "cuda" or "cuda:1"
    batch_size: int = 32  # frames per MTCNN forward pass (bounds GPU/CPU memory)

    def __post_init__(self):
        if self.select not in SELECT_MODES:
            raise ValueError(f"select must be one of {SELECT_MODES}, got {self.select!r}")
        if self.margin >= self.image_size:
            raise ValueError("margin must be smaller than image_size")
        if self.detect_max_side < 12 or self.batch_size < 1:
            raise ValueError("detect_max_side must be >= 12 and batch_size >= 1")


class FaceCrops(NamedTuple):
    """Per-frame result of :class:`FaceCropper`."""

    crops: np.ndarray  # uint8 (N, S, S, 3) RGB, 0..255
    face_found: np.ndarray  # bool (N,); False -> the crop is the centre-crop fallback
    boxes: np.ndarray  # float32 (N, 4) x1, y1, x2, y2 in full-resolution pixels; NaN if no face
    probs: np.ndarray  # float32 (N,) MTCNN probability of the chosen face; NaN if no face


def _resize_area(image: torch.Tensor, size: int) -> np.ndarray:
    """Resize an (h, w, 3) uint8 tensor to (size, size, 3) uint8 with area interpolation."""
    import torch
    import torch.nn.functional as F

    x = image.permute(2, 0, 1).unsqueeze(0).float()
    out = F.interpolate(x, size=(size, size), mode="area")
    return out.round_().clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def _half_bounds(width: int, select: str) -> tuple[int, int]:
    """Column range [x0, x1) a selection mode restricts faces and the fallback to."""
    if select == "left":
        return 0, width // 2
    if select == "right":
        return width // 2, width
    return 0, width


def centre_crop(frame: np.ndarray | torch.Tensor, size: int = FACE_SIZE, select: str = "largest") -> np.ndarray:
    """The fallback crop: the centred square of side ``min(H, W)`` resized to ``size`` x ``size``.

    With ``select="left"``/``"right"`` the square is centred in that half of the frame.
    """
    import torch

    image = torch.as_tensor(frame)
    x0, x1 = _half_bounds(image.shape[1], select)
    image = image[:, x0:x1]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return _resize_area(image[top : top + side, left : left + side], size)


class FaceCropper:
    """Batched face cropping: uint8 RGB frames (N, H, W, 3) -> :class:`FaceCrops`.

    The MTCNN networks are built once in ``__init__`` (weights ship with facenet-pytorch). Pickling
    carries only the config; the unpickled copy rebuilds MTCNN on its own device, so an instance
    can be shipped to Ray workers that hold a different (or no) GPU.

    Example::

        cropper = FaceCropper(FaceConfig(select="left"))
        out = cropper(frames)            # frames: np.uint8 (N, H, W, 3)
        x = normalize_faces(out.crops)   # float32 (N, 3, 48, 48) for the visual branch
    """

    def __init__(self, config: FaceConfig | None = None):
        import torch
        from facenet_pytorch import MTCNN  # imported here: heavy, and only actors need it

        self.config = config or FaceConfig()
        self.device = torch.device(self.config.device)
        # keep_all: we choose among all faces ourselves (left/right needs every candidate).
        self.mtcnn = MTCNN(
            image_size=self.config.image_size,
            margin=self.config.margin,
            min_face_size=self.config.min_face_size,
            thresholds=list(self.config.thresholds),
            post_process=False,
            keep_all=True,
            device=self.device,
        ).eval()

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        self.__init__(state["config"])

    def __call__(self, frames: np.ndarray) -> FaceCrops:
        """Crop one face per frame; frames of one segment or of many, all the same size."""
        import torch

        frames = np.asarray(frames)
        n = frames.shape[0] if frames.ndim == 4 else 0
        size = self.config.image_size
        if n == 0 and frames.size == 0:
            return FaceCrops(
                np.zeros((0, size, size, 3), np.uint8),
                np.zeros(0, bool),
                np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32),
            )
        if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 (N, H, W, 3) RGB frames, got {frames.dtype} {frames.shape}")
        frames = np.ascontiguousarray(frames)  # once: detection and cropping both read it
        boxes = np.full((n, 4), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        for start in range(0, n, self.config.batch_size):
            chunk = frames[start : start + self.config.batch_size]
            b, p = self.detect(chunk)
            boxes[start : start + len(chunk)] = b
            probs[start : start + len(chunk)] = p
        found = ~np.isnan(probs)
        crops = np.empty((n, size, size, 3), np.uint8)
        full = torch.from_numpy(frames)
        for i in range(n):
            crop = self._extract(full[i], boxes[i]) if found[i] else None
            if crop is None:
                found[i] = False
                boxes[i], probs[i] = np.nan, np.nan
                crop = centre_crop(full[i], size, self.config.select)
            crops[i] = crop
        return FaceCrops(crops, found, boxes, probs)

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN on one batch; the chosen face's box (full-resolution pixels) and probability.

        Returns float32 (N, 4) boxes and (N,) probabilities, NaN for frames without a face.
        """
        import torch

        with torch.no_grad():
            return self._detect(frames)

    def _detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        n, h, w = frames.shape[:3]
        boxes = np.full((n, 4), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        scale = min(1.0, self.config.detect_max_side / max(h, w))
        dh, dw = max(1, round(h * scale)), max(1, round(w * scale))
        # MTCNN's pyramid is empty (and facenet-pytorch crashes) below the minimum face size.
        if min(dh, dw) < self.config.min_face_size:
            return boxes, probs
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2)
        if (dh, dw) != (h, w):
            # Antialiased bilinear on uint8 has a fast CPU kernel (10-30x faster than "area" on
            # float for 1080p); CUDA's antialias kernel wants float, which is cheap there.
            if x.device.type != "cpu":
                x = x.float()
            x = F.interpolate(x, size=(dh, dw), mode="bilinear", antialias=True, align_corners=False)
            # MTCNN was trained on 8-bit images: keep the detection copy on integer levels.
            x = x.round().clamp(0, 255) if x.is_floating_point() else x
        all_boxes, all_probs = self.mtcnn.detect(x.permute(0, 2, 3, 1).float())
        sx, sy = w / dw, h / dh
        for i in range(n):
            if all_boxes[i] is None:
                continue
            cand = np.asarray(all_boxes[i], np.float64) * [sx, sy, sx, sy]
            cand_probs = np.asarray(all_probs[i], np.float64)
            pick = self._choose(cand, cand_probs, w)
            if pick is not None:
                boxes[i], probs[i] = cand[pick], cand_probs[pick]
        return boxes, probs

    def _choose(self, boxes: np.ndarray, probs: np.ndarray, width: int) -> int | None:
        """Index of the face the config's ``select`` picks, or None if no candidate qualifies."""
        idx = np.arange(len(boxes))
        if self.config.select in ("left", "right"):
            x0, x1 = _half_bounds(width, self.config.select)
            cx = (boxes[:, 0] + boxes[:, 2]) / 2
            idx = idx[(cx >= x0) & (cx < x1)]
        if len(idx) == 0:
            return None
        if self.config.select == "confident":
            return int(idx[np.argmax(probs[idx])])
        area = (boxes[idx, 2] - boxes[idx, 0]) * (boxes[idx, 3] - boxes[idx, 1])
        return int(idx[np.argmax(area)])

    def _extract(self, frame: torch.Tensor, box: np.ndarray) -> np.ndarray | None:
        """facenet-pytorch's ``extract_face`` on the full-resolution frame (None if degenerate)."""
        size, margin = self.config.image_size, self.config.margin
        h, w = frame.shape[:2]
        # The margin is given in output pixels; convert it to frame pixels for this box.
        mx = margin * (box[2] - box[0]) / (size - margin)
        my = margin * (box[3] - box[1]) / (size - margin)
        x0, y0 = int(max(box[0] - mx / 2, 0)), int(max(box[1] - my / 2, 0))
        x1, y1 = int(min(box[2] + mx / 2, w)), int(min(box[3] + my / 2, h))
        if x1 <= x0 or y1 <= y0:
            return None
        return _resize_area(frame[y0:y1, x0:x1], size)
