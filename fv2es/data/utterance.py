"""One row per utterance: the unit every dataset reader produces and every stage consumes.

Rows travel as plain dicts, so :class:`Utterance` converts both ways with
:meth:`Utterance.to_dict` / :meth:`Utterance.from_dict` (which also reads rows back from Arrow
or pandas, where absent values are nulls or NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

SPLITS = ("train", "valid", "test")
SIDES = ("left", "right")


@dataclass(frozen=True)
class Utterance:
    """One utterance: a whole video or a time segment of one, with its transcript and labels.

    Fields that are absent use ``None`` (or ``""`` / ``()`` where noted) rather than sentinels,
    so the same row means the same thing in Python, in Ray Data and in Parquet.
    """

    # Unique within a dataset; split lists refer to it.
    id: str
    # Any fsspec URI or local path of the video file.
    video_uri: str
    # Segment bounds in seconds; ``None`` means from the start / to the end of the video.
    start: float | None = None
    end: float | None = None
    # Transcript of the segment; "" means the text modality is absent.
    text: str = ""
    # Emotion names present; empty means unlabelled (rows only scored, never trained on).
    labels: tuple[str, ...] = ()
    # "left"/"right": which half of a side-by-side frame shows the speaker (IEMOCAP), else None.
    speaker_side: str | None = None
    # "train" / "valid" / "test", or None before a split is assigned.
    split: str | None = None
    # A separate audio file (IEMOCAP's dialog wav); None means take the audio from the video.
    audio_uri: str | None = None
    # Channel of a multi-channel ``audio_uri`` holding the speaker (IEMOCAP: 0 left, 1 right).
    audio_channel: int | None = None
    # Name of the source dataset ("iemocap", "mosei", or whatever a manifest says).
    dataset: str = "custom"

    def __post_init__(self) -> None:
        # Lists arrive from JSON / Arrow; a tuple keeps the dataclass hashable and immutable.
        if not isinstance(self.labels, tuple):
            object.__setattr__(self, "labels", tuple(self.labels))
        if not self.id:
            raise ValueError("utterance id must be a non-empty string")
        if not self.video_uri:
            raise ValueError(f"utterance {self.id!r}: video_uri must be a non-empty string")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"utterance {self.id!r}: {name} must be a finite number >= 0, got {value!r}")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"utterance {self.id!r}: start ({self.start}) must be < end ({self.end})")
        if self.speaker_side not in (None, *SIDES):
            raise ValueError(f"utterance {self.id!r}: speaker_side must be one of {SIDES} or None")
        if self.split not in (None, *SPLITS):
            raise ValueError(f"utterance {self.id!r}: split must be one of {SPLITS} or None")
        if self.audio_channel is not None and self.audio_channel < 0:
            raise ValueError(f"utterance {self.id!r}: audio_channel must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (labels as a list), the form Ray Data and Arrow expect."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["labels"] = list(self.labels)
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Utterance:
        """Build from a row dict as Ray Data hands it back.

        Missing keys take their defaults, keys that are not fields are ignored (rows carry
        extra columns downstream), numpy scalars/arrays become Python values, and NaN / NA in
        an optional column reads as ``None``.
        """
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in row:
                continue
            value = row[f.name]
            if f.name == "labels":
                if isinstance(value, str):  # a single name, not a sequence of characters
                    value = [value]
                kwargs[f.name] = () if _is_missing(value) else tuple(str(v) for v in value)
            elif _is_missing(value):
                kwargs[f.name] = "" if f.name == "text" else None
            elif f.name in ("start", "end"):
                kwargs[f.name] = float(value)
            elif f.name == "audio_channel":
                kwargs[f.name] = int(value)
            else:
                kwargs[f.name] = str(value)
        return cls(**kwargs)


@dataclass(frozen=True)
class ReadStats:
    """What a dataset reader found and what it left out, so nothing disappears silently.

    ``seen`` counts annotated utterances found; ``kept`` the rows returned. Every row seen but
    not kept is counted in exactly one of the *dropped* fields, so
    ``kept == seen - sum(dropped_labels.values()) - missing_video - missing_labels - bad_times
    - dropped_no_emotion``.
    """

    seen: int = 0
    kept: int = 0
    # Dropped: label outside the emotion list, counted per label (e.g. {"xxx": 4}).
    dropped_labels: Mapping[str, int] = field(default_factory=dict)
    # Dropped: the video file does not exist.
    missing_video: int = 0
    # Dropped: a transcript segment with no label row (MOSEI, when labels are given).
    missing_labels: int = 0
    # Dropped: annotated times that span no time (end <= start, or end <= 0).
    bad_times: int = 0
    # Dropped: no emotion present (MOSEI with ``keep_no_emotion=False``).
    dropped_no_emotion: int = 0
    # Kept with text "" (text modality absent): no transcript for the utterance.
    missing_transcript: int = 0
    # Kept with audio taken from the video: the separate audio file does not exist (IEMOCAP).
    missing_audio: int = 0
    # Kept rows whose label set is empty because no emotion is present (MOSEI).
    no_emotion: int = 0
    # Not a row: label records that matched no transcript segment (MOSEI).
    unmatched_labels: int = 0


def _is_missing(value: Any) -> bool:
    """None, a float NaN, or pandas' NA: what an absent optional value looks like after Arrow/pandas."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    # pandas.NA without importing pandas: its bool() raises, but its type name is stable.
    return type(value).__name__ == "NAType"
