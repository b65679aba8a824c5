"""Face tracks: the faces MTCNN finds in a segment's sampled frames, linked into one track per person.

A segment's frames are sampled every ``decode.img_interval_ms`` (500 ms by default), so a face may
move a fair way between two frames: a candidate continues a track when its box overlaps the
track's last box (IoU), or, failing that, when its centre lies within half a face (per frame
since) of the last centre and its size is alike (a turn of the head, a zoom). Each frame's candidates are matched
greedily, best pair first, one candidate per track; a track not seen for ``max_gap`` frames ends.
Appearance is not compared: in the clips this stage sees, people keep their places, and position
links them as well as a descriptor would at a fraction of the cost.

Tracks are numbered left to right by their median centre (``Track.index``), which keeps the same
number for the same person across the segments of a video while people keep their places; a track
seen in fewer than ``min_share`` of the segment's frames (a false detection, a face passing by) is
not a candidate for the segment's crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """The faces MTCNN found in one frame (full-resolution pixels)."""

    boxes: np.ndarray  # float (k, 4) x1, y1, x2, y2
    probs: np.ndarray  # float (k,)
    landmarks: np.ndarray  # float (k, 5, 2): eyes, nose, mouth corners (x, y); NaN when not given

    @staticmethod
    def none() -> Candidates:
        """A frame without a face."""
        return Candidates(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


@dataclass
class Track:
    """One person's face over a segment: per frame it was seen in, its box, probability, landmarks."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    index: int = -1  # its number among the segment's tracks, left to right (set by link_tracks)

    def add(self, frame: int, cand: Candidates, k: int) -> None:
        self.frames.append(frame)
        self.boxes.append(np.asarray(cand.boxes[k], np.float64))
        self.probs.append(float(cand.probs[k]))
        self.landmarks.append(np.asarray(cand.landmarks[k], np.float64))

    def median_box(self) -> np.ndarray:
        """The median x1, y1, x2, y2 over the frames it was seen in."""
        return np.median(np.stack(self.boxes), axis=0)

    def area(self) -> float:
        """Its median box's area (pixels)."""
        x1, y1, x2, y2 = self.median_box()
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    def box_at(self, frame: int) -> np.ndarray | None:
        """Its box in ``frame``, or None where it was not seen."""
        try:
            return self.boxes[self.frames.index(frame)]
        except ValueError:
            return None

    def at_times(self, times: np.ndarray, frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Its boxes (T, 4) and landmarks (T, 5, 2) at other ``times`` (seconds), interpolated linearly
        between the sampled frames it was seen in (``frame_times``: the segment's frame times) and held
        at its first and last box outside them."""
        seen = np.asarray(frame_times, np.float64)[self.frames]
        boxes, marks = np.stack(self.boxes), np.stack(self.landmarks).reshape(len(self.frames), 10)
        interp = [np.interp(times, seen, column) for column in np.concatenate([boxes, marks], axis=1).T]
        out = np.stack(interp, axis=1) if interp else np.zeros((len(times), 14))
        return out[:, :4], out[:, 4:].reshape(len(times), 5, 2)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _affinity(last: np.ndarray, box: np.ndarray, min_iou: float, frames: int = 1) -> float:
    """How well ``box`` continues a track last seen at ``last``, ``frames`` frames before: its IoU
    when that is at least ``min_iou``, else a score below ``min_iou`` for a centre within half a face
    per frame and an alike size, else 0."""
    iou = _iou(last, box)
    if iou >= min_iou:
        return iou
    size_last = np.sqrt(max(1e-9, (last[2] - last[0]) * (last[3] - last[1])))
    size_box = np.sqrt(max(1e-9, (box[2] - box[0]) * (box[3] - box[1])))
    if not 0.5 <= size_box / size_last <= 2.0:
        return 0.0
    shift = np.hypot((box[0] + box[2] - last[0] - last[2]) / 2, (box[1] + box[3] - last[1] - last[3]) / 2)
    near = 1.0 - shift / (0.5 * size_last * frames)
    return float(min_iou * near) if near > 0 else 0.0


def link_tracks(frames: list[Candidates], min_iou: float = 0.3, max_gap: int = 2,
                min_share: float = 0.25) -> list[Track]:
    """The tracks of one segment's per-frame candidates, numbered left to right.

    Only tracks seen in at least ``min_share`` of the frames are returned (with fewer, the longest
    one alone, so a face seen once in a short segment still counts).
    """
    tracks: list[Track] = []
    for f, cand in enumerate(frames):
        active = [t for t in tracks if f - t.frames[-1] <= max_gap + 1]
        pairs = sorted(((_affinity(t.boxes[-1], cand.boxes[k], min_iou, f - t.frames[-1]), i, k)
                        for i, t in enumerate(active) for k in range(len(cand.boxes))), reverse=True)
        used_t, used_k = set(), set()
        for score, i, k in pairs:
            if score <= 0 or i in used_t or k in used_k:
                continue
            active[i].add(f, cand, k)
            used_t.add(i)
            used_k.add(k)
        for k in range(len(cand.boxes)):
            if k not in used_k:
                track = Track()
                track.add(f, cand, k)
                tracks.append(track)
    if not tracks:
        return []
    need = min_share * len(frames)
    kept = [t for t in tracks if len(t.frames) >= need] or [max(tracks, key=lambda t: len(t.frames))]
    kept.sort(key=lambda t: float(t.median_box()[[0, 2]].mean()))
    for i, t in enumerate(kept):
        t.index = i
    return kept


def largest(tracks: list[Track]) -> Track | None:
    """The track of the largest median face (ties: the one seen in more frames)."""
    return max(tracks, key=lambda t: (t.area(), len(t.frames)), default=None)


def most_confident(tracks: list[Track]) -> Track | None:
    """The track MTCNN was surest of on average."""
    return max(tracks, key=lambda t: (float(np.mean(t.probs)), len(t.frames)), default=None)
