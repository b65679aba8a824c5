import json
import shutil
import wave
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fv2es.data.iemocap import read_iemocap
from fv2es.emotions import IEMOCAP_EMOTIONS
from fv2es.media.encode import write_clip
from fv2es.media.spectrogram import num_pieces
from fv2es.pipeline.packing import unpack_faces, unpack_pieces
from fv2es.preprocess import PreprocessRequest, run_preprocess
from fv2es.shards import EXAMPLE_COLUMNS, EXAMPLE_SCHEMA, HCF_COLUMNS, HCF_SCHEMA, ExampleShards

pytestmark = pytest.mark.slow  # each test preprocesses with Ray (the demo shards: once per session)


def test_demo_corpus_shards(demo_shards):
    shards = demo_shards / "shards"
    meta = json.loads((shards / "metadata.json").read_text())
    manifest = {json.loads(line)["id"]: json.loads(line) for line in
                (demo_shards / "demo" / "manifest.jsonl").read_text().splitlines()}
    assert meta["rows"] == {"total": 90, "ok": 90, "status_ok": 90}
    # The manifest's own (stratified) splits are kept: 15 clips a class -> 10 / 2 / 3.
    assert meta["split_rows"] == {"train": 60, "valid": 12, "test": 18}
    for split in ("train", "valid", "test"):
        expected = Counter(m["label"] for m in manifest.values() if m["split"] == split)
        assert meta["class_counts"][split] == {e: expected[e] for e in IEMOCAP_EMOTIONS}
    assert meta["emotions"] == list(IEMOCAP_EMOTIONS)
    assert meta["shard_bytes_per_utterance_second"] > 1000
    table = ExampleShards(str(shards)).read()
    # the demo shards hold the baselines' features too (tests/train/test_baseline_training.py checks them)
    assert table.column_names == EXAMPLE_COLUMNS + HCF_COLUMNS and table.num_rows == 90
    assert table.schema.remove_metadata() == pa.unify_schemas([EXAMPLE_SCHEMA, HCF_SCHEMA])
    for row in table.to_pylist():
        source = manifest[row["id"]]
        assert row["labels"] == [source["label"]] and row["split"] == source["split"]
        assert row["target"] == [1.0 if e == source["label"] else 0.0 for e in IEMOCAP_EMOTIONS]
        assert row["text"] == source["text"]
        faces = unpack_faces(row["faces"])
        assert faces.shape == (row["frames_sampled"], 48, 48, 3)
        assert len(row["face_mask"]) == row["frames_sampled"] and sum(row["face_mask"]) == row["faces_found"]
        assert row["faces_found"] >= row["frames_sampled"] - 1
        assert unpack_pieces(row["pieces"]).shape == (row["piece_count"], 4, 32, 32)
        assert row["piece_count"] == num_pieces(source["end"] - source["start"])


def _iemocap_tree(root, annotations, seconds=110.0):
    """The IEMOCAP raw layout: the real annotation files, a generated dialog video and stereo wav."""
    label, text = annotations
    dialog = root / "Session1" / "dialog"
    for folder in ("EmoEvaluation", "transcriptions", "avi/DivX", "wav"):
        (dialog / folder).mkdir(parents=True)
    shutil.copyfile(label, dialog / "EmoEvaluation" / "Ses01F_impro01.txt")
    shutil.copyfile(text, dialog / "transcriptions" / "Ses01F_impro01.txt")
    fps = 4
    frames = np.zeros((int(seconds * fps), 48, 128, 3), np.uint8)
    frames[:, :, :64] = (200, 60, 60)  # left actor's half
    frames[:, :, 64:] = (60, 60, 200)  # right actor's half
    write_clip(str(dialog / "avi" / "DivX" / "Ses01F_impro01.avi.mp4"), frames, fps)
    (dialog / "avi" / "DivX" / "Ses01F_impro01.avi.mp4").rename(dialog / "avi" / "DivX" / "Ses01F_impro01.avi")
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    stereo = np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 600 * t)], 1) * 0.3
    with wave.open(str(dialog / "wav" / "Ses01F_impro01.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((stereo * 32767).astype("<i2").tobytes())
    return root


def test_iemocap_layout_shards(tmp_path, ray_cluster, tiny_cfg, iemocap_annotations):
    root = _iemocap_tree(tmp_path / "IEMOCAP_full_release", iemocap_annotations)
    out = tmp_path / "shards"
    meta = run_preprocess(tiny_cfg, PreprocessRequest("iemocap", str(root), str(out)))
    utterances, _ = read_iemocap(str(root))
    assert meta["rows"]["total"] == meta["rows"]["ok"] == 26
    assert meta["reader"]["dropped_labels"] == {"xxx": 4}
    assert sum(meta["split_rows"].values()) == 26
    assert sum(sum(c.values()) for c in meta["class_counts"].values()) == 26
    table = pq.read_table(str(out / "examples")).to_pylist()
    by_id = {r["id"]: r for r in table}
    assert set(by_id) == {u.id for u in utterances}
    for u in utterances:
        row = by_id[u.id]
        assert row["labels"] == list(u.labels) and (row["start"], row["end"]) == pytest.approx((u.start, u.end))
        assert row["text"] == u.text and row["status"] == "ok"
        assert row["piece_count"] == num_pieces(u.end - u.start)
        assert abs(row["frames_sampled"] - (u.end - u.start) * 2) <= 1
        # The crop is the speaker's half of the frame: red for the left actor, blue for the right.
        faces = unpack_faces(row["faces"]).astype(float)
        red, blue = faces[..., 0].mean(), faces[..., 2].mean()
        assert (red > blue) == (u.speaker_side == "left"), u.id
    f000 = by_id["Ses01F_impro01_F000"]
    assert f000["labels"] == ["neu"] and f000["text"] == "Excuse me."
