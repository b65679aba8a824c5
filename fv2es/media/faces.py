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

A segment's crops come from one person: the faces of its frames are linked into tracks
(:mod:`fv2es.media.tracks`) and ``select`` picks one track: ``largest`` (median box), ``confident``,
``left``/``right`` (the largest track in that half), or ``speaker`` (the default): the track whose
mouth moves with the speech (:mod:`fv2es.media.speaker`; the face stage measures it), the largest
where there is one track or no speech. Frames where the chosen track was not seen get the
centre-crop fallback, as frames without a face always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fv2es.media.tracks import Candidates, Track, largest, link_tracks, most_confident
from fv2es.models.geometry import FACE_SIZE

if TYPE_CHECKING:  # torch is imported where it computes: the config and decode tasks never do
    from collections.abc import Callable

    import torch

    SpeakerRule = Callable[[list[Track]], "int | None"]  # tracks -> the speaking one's index, or None

SELECT_MODES = ("speaker", "largest", "confident", "left", "right")


@dataclass(frozen=True)
class FaceConfig:
    """Options of :class:`FaceCropper`; the defaults are the seed's."""

    image_size: int = FACE_SIZE  # side of the square output crop, pixels (the model's face input)
    margin: int = 2  # margin around the box, in pixels of the output crop (facenet semantics)
    detect_max_side: int = 320  # frames are downscaled to at most this longest side for detection
    min_face_size: int = 20  # smallest face MTCNN looks for, in pixels of the detection image
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-net score thresholds
    # which face track: speaker (whose mouth moves with the speech; largest with one track or no
    # speech) | largest | confident | left | right (the largest in that half of the frame)
    select: str = "speaker"
    device: str = "cpu"  # torch device for MTCNN, e.g. "cuda" or "cuda:1"
    batch_size: int = 32  # frames per MTCNN forward pass (bounds GPU/CPU memory)
    min_track_share: float = 0.25  # a track seen in fewer of a segment's frames is not a candidate
    sync_interval_ms: int = 80  # frame interval the speaker is looked for at (segments with > 1 track)
    sync_max_side: int = 320  # longer side of those frames (the mouth's motion needs no more)

    def __post_init__(self):
        if self.select not in SELECT_MODES:
            raise ValueError(f"select must be one of {SELECT_MODES}, got {self.select!r}")
        if self.margin >= self.image_size:
            raise ValueError("margin must be smaller than image_size")
        if self.detect_max_side < 12 or self.batch_size < 1:
            raise ValueError("detect_max_side must be >= 12 and batch_size >= 1")
        if not 0 <= self.min_track_share <= 1 or self.sync_interval_ms < 1 or self.sync_max_side < 32:
            raise ValueError("min_track_share must be in [0, 1], sync_interval_ms >= 1, sync_max_side >= 32")


class FaceCrops(NamedTuple):
    """Per-frame result of :class:`FaceCropper`."""

    crops: np.ndarray  # uint8 (N, S, S, 3) RGB, 0..255
    face_found: np.ndarray  # bool (N,); False -> the crop is the centre-crop fallback
    boxes: np.ndarray  # float32 (N, 4) x1, y1, x2, y2 in full-resolution pixels; NaN if no face
    probs: np.ndarray  # float32 (N,) MTCNN probability of the chosen face; NaN if no face
    tracks: tuple = ()  # the segment's face tracks (fv2es.media.tracks.Track), left to right
    track: int = -1  # the chosen track's index in ``tracks``; -1: no face
    rule: str = ""  # the rule that chose it: speaker | largest | confident | left | right; "" without a face


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
        """Crop one face per frame, chosen frame by frame (``speaker`` chooses as ``largest``);
        frames of one segment or of many, all the same size. A segment's crops from one person's
        track: :meth:`segment`."""
        frames, empty = self._check(frames)
        if empty is not None:
            return empty
        n = len(frames)
        boxes = np.full((n, 4), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        for i, cand in enumerate(self.candidates(frames)):
            pick = self._choose(cand.boxes, cand.probs)
            if pick is not None:
                boxes[i], probs[i] = cand.boxes[pick], cand.probs[pick]
        return self._crops(frames, boxes, probs)

    def segment(self, frames: np.ndarray, speaker: SpeakerRule | None = None) -> FaceCrops:
        """One segment's frames -> crops of one face track (``FaceCrops.tracks``, ``.track``, ``.rule``).

        ``speaker``: for ``select="speaker"`` and more than one track, a function of the tracks
        that returns the speaking one's index, or None (no speech, no mouth in step with it); the
        largest track is taken then, and always without it.
        """
        frames, empty = self._check(frames)
        if empty is not None:
            return empty
        tracks = link_tracks(self.candidates(frames), min_share=self.config.min_track_share)
        chosen, rule = self._pick(tracks, speaker)
        n = len(frames)
        boxes = np.full((n, 4), np.nan, np.float32)
        probs = np.full(n, np.nan, np.float32)
        if chosen is not None:
            for f, box, prob in zip(chosen.frames, chosen.boxes, chosen.probs):
                boxes[f], probs[f] = box, prob
        out = self._crops(frames, boxes, probs)
        return out._replace(tracks=tuple(tracks), track=-1 if chosen is None else chosen.index,
                            rule=rule if chosen is not None else "")

    def track_crops(self, frames: np.ndarray, track: Track) -> FaceCrops:
        """The crops of one of :meth:`segment`'s tracks (``segments.per_person``: every visible
        person's own crops); frames where it was not seen get the centre-crop fallback."""
        frames, empty = self._check(frames)
        if empty is not None:
            return empty
        boxes = np.full((len(frames), 4), np.nan, np.float32)
        probs = np.full(len(frames), np.nan, np.float32)
        for f, box, prob in zip(track.frames, track.boxes, track.probs):
            boxes[f], probs[f] = box, prob
        return self._crops(frames, boxes, probs)

    def _pick(self, tracks: list[Track], speaker: SpeakerRule | None) -> tuple[Track | None, str]:
        select = self.config.select
        if select == "confident":
            return most_confident(tracks), select
        if select == "speaker" and len(tracks) > 1 and speaker is not None:
            k = speaker(tracks)
            if k is not None:
                return tracks[k], select
        return largest(tracks), ("largest" if select == "speaker" else select)

    def _check(self, frames) -> tuple[np.ndarray, FaceCrops | None]:
        """The frames as one contiguous uint8 (N, H, W, 3) array, and the result when there are none."""
        frames = np.asarray(frames)
        if frames.shape[:1] == (0,) or (frames.ndim != 4 and frames.size == 0):
            size = self.config.image_size
            return frames, FaceCrops(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, bool),
                                     np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 (N, H, W, 3) RGB frames, got {frames.dtype} {frames.shape}")
        return np.ascontiguousarray(frames), None  # once: detection and cropping both read it

    def _crops(self, frames: np.ndarray, boxes: np.ndarray, probs: np.ndarray) -> FaceCrops:
        """The crops of ``boxes`` (NaN rows: the centre-crop fallback)."""
        import torch

        size = self.config.image_size
        found = ~np.isnan(probs)
        crops = np.empty((len(frames), size, size, 3), np.uint8)
        full = torch.from_numpy(frames)
        for i in range(len(frames)):
            crop = self._extract(full[i], boxes[i]) if found[i] else None
            if crop is None:
                found[i] = False
                boxes[i], probs[i] = np.nan, np.nan
                crop = centre_crop(full[i], size, self.config.select)
            crops[i] = crop
        return FaceCrops(crops, found, boxes, probs)

    def candidates(self, frames: np.ndarray) -> list[Candidates]:
        """Every face MTCNN finds in each frame (full-resolution pixels, with landmarks), in
        batches of ``batch_size``; with ``select`` left/right only those centred in that half."""
        import torch

        out: list[Candidates] = []
        with torch.no_grad():
            for start in range(0, len(frames), self.config.batch_size):
                out.extend(self._detect(frames[start : start + self.config.batch_size]))
        return out

    def detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MTCNN on one batch; the chosen face's box (full-resolution pixels) and probability.

        Returns float32 (N, 4) boxes and (N,) probabilities, NaN for frames without a face.
        """
        boxes = np.full((len(frames), 4), np.nan, np.float32)
        probs = np.full(len(frames), np.nan, np.float32)
        for i, cand in enumerate(self.candidates(np.asarray(frames))):
            pick = self._choose(cand.boxes, cand.probs)
            if pick is not None:
                boxes[i], probs[i] = cand.boxes[pick], cand.probs[pick]
        return boxes, probs

    def _detect(self, frames: np.ndarray) -> list[Candidates]:
        import torch
        import torch.nn.functional as F

        n, h, w = frames.shape[:3]
        scale = min(1.0, self.config.detect_max_side / max(h, w))
        dh, dw = max(1, round(h * scale)), max(1, round(w * scale))
        # MTCNN's pyramid is empty (and facenet-pytorch crashes) below the minimum face size.
        if min(dh, dw) < self.config.min_face_size:
            return [Candidates.none() for _ in range(n)]
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2)
        if (dh, dw) != (h, w):
            # Antialiased bilinear on uint8 has a fast CPU kernel (10-30x faster than "area" on
            # float for 1080p); CUDA's antialias kernel wants float, which is cheap there.
            if x.device.type != "cpu":
                x = x.float()
            x = F.interpolate(x, size=(dh, dw), mode="bilinear", antialias=True, align_corners=False)
            # MTCNN was trained on 8-bit images: keep the detection copy on integer levels.
            x = x.round().clamp(0, 255) if x.is_floating_point() else x
        all_boxes, all_probs, all_marks = self.mtcnn.detect(x.permute(0, 2, 3, 1).float(), landmarks=True)
        sx, sy = w / dw, h / dh
        out = []
        for i in range(n):
            if all_boxes[i] is None:
                out.append(Candidates.none())
                continue
            boxes = np.asarray(all_boxes[i], np.float64) * [sx, sy, sx, sy]
            marks = np.asarray(all_marks[i], np.float64).reshape(-1, 5, 2) * [sx, sy]
            keep = np.ones(len(boxes), bool)
            if self.config.select in ("left", "right"):
                x0, x1 = _half_bounds(w, self.config.select)
                cx = (boxes[:, 0] + boxes[:, 2]) / 2
                keep = (cx >= x0) & (cx < x1)
            out.append(Candidates(boxes[keep], np.asarray(all_probs[i], np.float64)[keep], marks[keep]))
        return out

    def _choose(self, boxes: np.ndarray, probs: np.ndarray) -> int | None:
        """Index of the face the config's ``select`` picks in one frame, or None without a candidate."""
        if len(boxes) == 0:
            return None
        if self.config.select == "confident":
            return int(np.argmax(probs))
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(np.argmax(area))

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
