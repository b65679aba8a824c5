"""The demo corpus: files, manifest, balance, determinism, and that each modality carries the class."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from fv2es.media import democorpus
from fv2es.media.democorpus import IEMOCAP_EMOTIONS, make_demo_corpus
from fv2es.media.faces import FaceCropper
from tests.media.conftest import dominant_hz

VIDEOS = 18  # three clips per class
SECONDS = (1.0, 2.0)


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def _decode(path: str) -> tuple[np.ndarray, np.ndarray, dict]:
    with av.open(path) as c:
        info = {
            "duration": c.duration / 1e6,
            "audio_streams": len(c.streams.audio),
            "rate": c.streams.video[0].average_rate,
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        c.seek(0)
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, audio, info


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_demo_corpus(tmp_path_factory.mktemp("demo"), videos=VIDEOS, seed=3, seconds=SECONDS)


def test_files_and_manifest(corpus):
    rows = _rows(corpus)
    assert len(rows) == VIDEOS
    assert [tuple(r) for r in rows] == [democorpus.COLUMNS] * VIDEOS
    assert sorted(p.name for p in corpus.parent.glob("*.mp4")) == [f"clip_{i:05d}.mp4" for i in range(VIDEOS)]
    for r in rows:
        path = Path(r["video_uri"])
        assert path.is_absolute() and path.exists() and path.parent == corpus.parent
        assert path.with_suffix(".txt").read_text().strip() == r["text"]
        assert r["start"] == 0.0 and SECONDS[0] <= r["end"] <= SECONDS[1]
        assert r["split"] in ("train", "valid", "test")
    with open(corpus.parent / "manifest.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["video_uri"], r["label"], r["text"], r["split"]) for r in csv_rows] == [
        (r["video_uri"], r["label"], r["text"], r["split"]) for r in rows
    ]
    assert [float(r["end"]) for r in csv_rows] == [r["end"] for r in rows]


def test_classes_balanced(corpus):
    assert Counter(r["label"] for r in _rows(corpus)) == {e: VIDEOS // 6 for e in IEMOCAP_EMOTIONS}


def test_splits_stratified_70_10_20():
    labels = np.resize(np.arange(6), 60)
    splits = democorpus._stratified_splits(labels, np.random.default_rng(0))
    for k in range(6):
        counts = Counter(s for s, label in zip(splits, labels) if label == k)
        assert counts == {"train": 7, "valid": 1, "test": 2}


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory) -> Path:
    """The same corpus generated a second time, elsewhere."""
    return make_demo_corpus(tmp_path_factory.mktemp("again"), videos=VIDEOS, seed=3, seconds=SECONDS)


def test_manifest_deterministic(corpus, corpus_again, tmp_path):
    # Only the (absolute) directory in video_uri differs, so in one place the bytes are equal.
    moved = corpus_again.read_bytes().replace(bytes(corpus_again.parent), bytes(corpus.parent))
    assert moved == corpus.read_bytes()
    moved_csv = (corpus_again.parent / "manifest.csv").read_bytes()
    moved_csv = moved_csv.replace(bytes(corpus_again.parent), bytes(corpus.parent))
    assert moved_csv == (corpus.parent / "manifest.csv").read_bytes()
    # Another seed is another corpus.
    another = _rows(make_demo_corpus(tmp_path, videos=2, seed=4, seconds=SECONDS))
    assert [r["text"] for r in another] != [r["text"] for r in _rows(corpus)[:2]]


def test_generated_media_deterministic():
    base = democorpus._base_picture(160, 120)
    for k in (0, 4):  # a tinted and the greyscale style
        a = democorpus._frames(base, k, 20, 160, 120, np.random.default_rng([3, k]))
        b = democorpus._frames(base, k, 20, 160, 120, np.random.default_rng([3, k]))
        np.testing.assert_array_equal(a, b)
        voice = democorpus._voice(k, 8000, np.random.default_rng([3, k]))
        np.testing.assert_array_equal(voice, democorpus._voice(k, 8000, np.random.default_rng([3, k])))


def test_decoded_frames_deterministic(corpus, corpus_again):
    for a, b in zip(_rows(corpus), _rows(corpus_again)):
        frames_a, audio_a, _ = _decode(a["video_uri"])
        frames_b, audio_b, _ = _decode(b["video_uri"])
        np.testing.assert_array_equal(audio_a, audio_b)
        # Multi-threaded x264 is not repeatable; write_clip must encode with one thread.
        np.testing.assert_array_equal(frames_a, frames_b, err_msg=f"x264 output differs: {a['video_uri']}")


def test_clips_decode_with_expected_duration_and_audio(corpus):
    for r in _rows(corpus)[:6]:
        frames, audio, info = _decode(r["video_uri"])
        assert info["audio_streams"] == 1 and info["rate"] == 15
        assert frames.shape[1:] == (120, 160, 3)
        assert len(frames) == round(r["end"] * 15)
        assert abs(info["duration"] - r["end"]) < 0.1
        assert abs(len(audio) / 16000 - r["end"]) < 0.1


def test_each_modality_carries_the_class(corpus):
    cropper = FaceCropper()
    found, colour = [], {}
    for r in _rows(corpus):
        k = IEMOCAP_EMOTIONS.index(r["label"])
        frames, audio, _ = _decode(r["video_uri"])
        out = cropper(frames[::4])
        found.extend(out.face_found.tolist())
        colour.setdefault(k, []).append(out.crops[out.face_found].reshape(-1, 3).mean(0))
        # Voice: the pitch is the class's fundamental (+-3 % per-clip jitter).
        f0 = democorpus._VOICE[k][0]
        assert abs(dominant_hz(audio[4000:], 16000) - f0) < 0.05 * f0
        # Text: at least one word of the class vocabulary, none of another class's.
        assert any(_has_word(r["text"], w) for w in democorpus._WORDS[r["label"]]), r["text"]
        for other in set(IEMOCAP_EMOTIONS) - {r["label"]}:
            assert not any(_has_word(r["text"], w) for w in democorpus._WORDS[other]), r["text"]
    # Faces: MTCNN finds the astronaut in most sampled frames of every class.
    assert np.mean(found) > 0.9
    # and the mean crop colour differs clearly between every pair of classes.
    means = {k: np.mean(v, axis=0) for k, v in colour.items()}
    for a in means:
        for b in means:
            if a < b:
                assert np.abs(means[a] - means[b]).max() > 10, (a, b, means[a], means[b])


def test_manifest_reads_back_through_the_manifest_reader(tmp_path):
    from fv2es.data.manifest import read_manifest
    from fv2es.data.transcripts import load_sidecar_transcript
    from fv2es.emotions import IEMOCAP_EMOTIONS

    manifest = make_demo_corpus(tmp_path / "demo", videos=6, seed=3, seconds=(1.0, 1.5))
    from_jsonl = read_manifest(str(manifest), emotions=IEMOCAP_EMOTIONS)
    from_csv = read_manifest(str(manifest.with_suffix(".csv")), emotions=IEMOCAP_EMOTIONS)
    assert from_jsonl == from_csv
    assert [u.id for u in from_jsonl] == [f"clip_{i:05d}" for i in range(6)]
    assert sorted(u.labels[0] for u in from_jsonl) == sorted(IEMOCAP_EMOTIONS)
    for u in from_jsonl:
        (segment,) = load_sidecar_transcript(u.video_uri)
        assert segment.text == u.text and u.start == 0.0 and 1.0 <= u.end <= 1.5 + 1e-6
