"""IEMOCAP from the raw release, on any fsspec storage.

Layout under ``root_uri`` (the ``IEMOCAP_full_release`` folder)::

    SessionN/dialog/avi/DivX/<dialog>.avi          both actors side by side
    SessionN/dialog/wav/<dialog>.wav               stereo, one actor per channel
    SessionN/dialog/transcriptions/<dialog>.txt    "<utt_id> [<start>-<end>]: <text>"
    SessionN/dialog/EmoEvaluation/<dialog>.txt     "[<start> - <end>]\\t<utt_id>\\t<label>\\t[V, A, D]"

Each annotated turn becomes one :class:`~fv2es.data.utterance.Utterance` with the segment's
times, its transcript, its label, which half of the frame shows the speaker and which wav
channel carries them. Turns outside the emotion list are dropped and counted per label.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from fv2es.data.transcripts import Segment, decode_text, parse_iemocap_transcription
from fv2es.data.utterance import ReadStats, Utterance
from fv2es.emotions import IEMOCAP_EMOTIONS

DATASET = "iemocap"

# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"; the per-annotator
# lines that follow ("C-E2:\tNeutral;\t()") do not match and are skipped.
_EVALUATION_LINE = re.compile(r"^\[\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*\]\s+(\S+)\s+(\S+)")
# "Ses01F_impro01_M003": session 1, female-led session; speaker letter M.
_UTTERANCE_ID = re.compile(r"^Ses\d+([FM])_.+_([FM])[^_]*$")
_SESSION_DIR = re.compile(r"^Session(\d+)$")


def speaker_side(utterance_id: str) -> str:
    """``"left"`` when the session letter equals the speaker letter, else ``"right"``.

    Each dialog video shows the two actors side by side; the session's lead actor (the ``F``
    of ``Ses01F``) sits on the left. The stereo wav's channels follow the same order.
    """
    match = _UTTERANCE_ID.match(utterance_id)
    if match is None:
        raise ValueError(f"not an IEMOCAP utterance id: {utterance_id!r}")
    return "left" if match.group(1) == match.group(2) else "right"


def parse_emo_evaluation(content: str) -> list[tuple[str, float, float, str]]:
    """(utterance id, start, end, label) for each turn of an ``EmoEvaluation/<dialog>.txt``, in file order."""
    turns = []
    for line in content.splitlines():
        match = _EVALUATION_LINE.match(line)
        if match:
            start, end, utt_id, label = match.groups()
            turns.append((utt_id, float(start), float(end), label))
    return turns


def read_iemocap(
    root_uri: str,
    storage_options: Mapping[str, Any] | None = None,
    emotions: Sequence[str] = IEMOCAP_EMOTIONS,
) -> tuple[list[Utterance], ReadStats]:
    """Read every annotated turn of the raw IEMOCAP release under ``root_uri``.

    Args:
        root_uri: folder holding ``Session1`` .. ``Session5``; any fsspec URI or local path.
        storage_options: passed to fsspec (e.g. S3 credentials or ``endpoint_url``).
        emotions: labels to keep; turns with any other label (``xxx``, ``sur``, ...) are dropped.

    Returns:
        The utterances (sessions in number order, turns in annotation-file order) and the
        counts of what was dropped (other labels, missing videos) or kept incomplete (missing
        transcript: text ""; missing wav: audio from the video).
    """
    fs, root = url_to_fs(root_uri, **(storage_options or {}))
    keep_protocol = "://" in root_uri
    wanted = set(emotions)
    utterances: list[Utterance] = []
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()

    for session in _sessions(fs, root):
        dialog_dir = posixpath.join(session, "dialog")
        evaluations = _list_names(fs, posixpath.join(dialog_dir, "EmoEvaluation"), ".txt")
        videos = _list_names(fs, posixpath.join(dialog_dir, "avi", "DivX"), ".avi")
        wavs = _list_names(fs, posixpath.join(dialog_dir, "wav"), ".wav")
        dialogs = sorted(evaluations)
        # One batched read per session: on object storage fsspec fetches these concurrently.
        evaluation_texts = _cat(
            fs, [posixpath.join(dialog_dir, "EmoEvaluation", f"{d}.txt") for d in dialogs]
        )
        transcript_texts = _cat(
            fs, [posixpath.join(dialog_dir, "transcriptions", f"{d}.txt") for d in dialogs]
        )

        for dialog, evaluation, transcript in zip(dialogs, evaluation_texts, transcript_texts):
            if evaluation is None:
                raise OSError(f"cannot read {posixpath.join(dialog_dir, 'EmoEvaluation', dialog + '.txt')}")
            texts: dict[str, Segment] = {} if transcript is None else parse_iemocap_transcription(transcript)
            video = posixpath.join(dialog_dir, "avi", "DivX", f"{dialog}.avi")
            wav = posixpath.join(dialog_dir, "wav", f"{dialog}.wav")
            for utt_id, start, end, label in parse_emo_evaluation(evaluation):
                counts["seen"] += 1
                if label not in wanted:
                    dropped[label] += 1
                    continue
                if dialog not in videos:
                    counts["missing_video"] += 1
                    continue
                if end <= start:
                    counts["bad_times"] += 1
                    continue
                segment = texts.get(utt_id)
                if segment is None:
                    counts["missing_transcript"] += 1
                side = speaker_side(utt_id)
                has_wav = dialog in wavs
                counts["missing_audio"] += not has_wav
                utterances.append(
                    Utterance(
                        id=utt_id,
                        video_uri=_uri(fs, video, keep_protocol),
                        start=start,
                        end=end,
                        text="" if segment is None else segment.text,
                        labels=(label,),
                        speaker_side=side,
                        audio_uri=_uri(fs, wav, keep_protocol) if has_wav else None,
                        audio_channel=(0 if side == "left" else 1) if has_wav else None,
                        dataset=DATASET,
                    )
                )

    stats = ReadStats(
        seen=counts["seen"],
        kept=len(utterances),
        dropped_labels=dict(sorted(dropped.items())),
        missing_video=counts["missing_video"],
        bad_times=counts["bad_times"],
        missing_transcript=counts["missing_transcript"],
        missing_audio=counts["missing_audio"],
    )
    return utterances, stats


def _sessions(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    if not fs.isdir(root):
        raise FileNotFoundError(f"IEMOCAP root not found: {root}")
    found = []
    for path in fs.ls(root, detail=False):
        match = _SESSION_DIR.match(posixpath.basename(path.rstrip("/")))
        if match:
            found.append((int(match.group(1)), path.rstrip("/")))
    if not found:
        raise FileNotFoundError(f"no Session<N> folders under {root}")
    return [path for _, path in sorted(found)]


def _list_names(fs: fsspec.AbstractFileSystem, folder: str, suffix: str) -> set[str]:
    """Stems of the files in ``folder`` with ``suffix``; empty when the folder is missing.

    Skips macOS "._" resource-fork files, which some copies of the release carry.
    """
    try:
        paths = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return set()
    names = (posixpath.basename(p.rstrip("/")) for p in paths)
    return {n[: -len(suffix)] for n in names if n.endswith(suffix) and not n.startswith("._")}


def _cat(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[str | None]:
    """Decoded contents of ``paths`` in order; None for a file that cannot be read."""
    if not paths:
        return []
    found = fs.cat(paths, on_error="return")
    # fsspec keys the result by its own normalised path; normalise ours the same way.
    out = []
    for path in paths:
        data = found.get(fs._strip_protocol(path))
        out.append(decode_text(data) if isinstance(data, bytes) else None)
    return out


def _uri(fs: fsspec.AbstractFileSystem, path: str, keep_protocol: bool) -> str:
    # Give back URIs in the form the caller used: "s3://..." stays a URI, a local path a path.
    return fs.unstrip_protocol(path) if keep_protocol else path
