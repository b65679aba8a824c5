"""The floors of the speed benchmark: each stage's work measured alone, at its best settings.

``decode_floor`` decodes every clip at the sampling scoring uses, one process per core.
``asr_floor`` transcribes the clips without captions (what ``asr.mode=auto`` sends to speech to
text) with one Whisper, every core's thread, on audio decoded beforehand. ``face_floor`` runs the
face cropper (batched MTCNN at ``faces.max_side``, as the face stage runs it) on every sampled
frame, decoded beforehand. ``model_floor`` is the model alone (``speed.Bench``). The full floor is
their sum: what scoring costs on this machine if nothing but the work ran, one stage after
another with every core each.
"""

from __future__ import annotations

import dataclasses
import os
import time


def decode_clip(path: str, decode_cfg) -> int:
    """Decode one clip (``decode_floor``'s unit of work); the frames it gave."""
    from fv2es.media.decode import decode

    return sum(len(r.frames) for r in decode(path, None, decode_cfg))


def warm(_) -> None:
    """Import the decoder in a pool worker before the timing."""
    import fv2es.media.decode  # noqa: F401


class StageFloors:
    """The speech-to-text and face floors of ``clips``, their inputs decoded once at construction."""

    def __init__(self, cfg, clips):
        from fv2es.media.decode import decode
        from fv2es.media.faces import FaceCropper

        self.frames = []  # every segment's sampled frames (what the face stage gets)
        self.audio = []  # the whole audio of each clip without captions (what speech to text gets)
        for clip in clips:
            rows = decode(clip.path, [(s, e) for s, e, _ in clip.utterances], cfg.decode)
            self.frames.extend(row.frames for row in rows if len(row.frames))
            if not clip.captions and cfg.asr.mode != "never":
                (whole,) = decode(clip.path, None, dataclasses.replace(cfg.decode, img_interval_ms=10**9))
                self.audio.append(whole.audio)
        self.cropper = FaceCropper(cfg.faces)
        self.asr_cfg = dataclasses.replace(cfg.asr, cpu_threads=os.cpu_count() or 1)
        self._transcriber = None

    @property
    def transcriber(self):
        """Whisper, loaded at the first use (outside the timing: :meth:`warm_up`)."""
        if self._transcriber is None:
            from fv2es.asr.engine import Transcriber

            self._transcriber = Transcriber(self.asr_cfg)
        return self._transcriber

    def warm_up(self) -> None:
        """Load the models and run each once on a little input, so the rounds time the work."""
        if self.audio:
            self.transcriber(self.audio[0][:16000])
        if self.frames:
            self.cropper(self.frames[0][:1])

    def asr(self) -> dict:
        """Transcribe the uncaptioned clips; seconds and words."""
        start = time.perf_counter()
        words = sum(len(u.words) for audio in self.audio for u in self.transcriber(audio).utterances)
        return {"asr": time.perf_counter() - start, "words": words, "clips": len(self.audio)}

    def faces(self) -> dict:
        """Crop the faces of every sampled frame; seconds, frames and faces found."""
        start = time.perf_counter()
        found = sum(int(self.cropper(frames).face_found.sum()) for frames in self.frames)
        return {"face": time.perf_counter() - start, "frames": sum(len(f) for f in self.frames), "found": found}
