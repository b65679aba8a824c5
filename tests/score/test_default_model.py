"""``fv2es score`` with no checkpoint: the packaged default model, fused and per-modality columns.

The one Ray run scores real faces (scikit-image's astronaut, who smiles) in clips this test
writes: one with no words, one with a sad sidecar transcript, one with no face at all.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
import skimage.transform

from fv2es.emotions import prob_column
from fv2es.failures import OK
from fv2es.media.encode import write_clip
from fv2es.models.expression import EXPRESSIONS
from fv2es.models.packaged import PACKAGED_URI, packaged_model_id
from fv2es.pipeline.packing import pack
from fv2es.score.job import segment_columns
from fv2es.score.model_stage import EMPTY, ModelStage

SAD = "My grandmother died last night and I can't stop crying."


def astronaut_frames(n=4, side=320):
    image = skimage.transform.resize(skimage.data.astronaut(), (side, side), anti_aliasing=True)
    return np.stack([(image * 255).round().astype(np.uint8)] * n)


def test_the_model_stage_declares_and_fills_every_modality_column():
    columns = ModelStage.columns(EXPRESSIONS)
    assert columns[: len(EXPRESSIONS)] == [prob_column(e) for e in EXPRESSIONS]
    for m in ("text", "face", "voice"):
        assert [prob_column(e, m) for e in EXPRESSIONS] == [c for c in columns if c.startswith(f"prob_{m}_")]
    assert columns[-3:] == ["top_emotion", "predicted", "model_id"]

    stage = ModelStage(None)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    batch = pa.Table.from_pylist([
        # frames sampled, but MTCNN found no face (centre-crop fallbacks) and nothing was said
        {"text": "", "faces": pack(noise), "face_mask": pack(np.zeros(2, np.uint8)), "pieces": b"",
         "frames_sampled": 2, "faces_found": 0, "piece_count": 3, "status": OK, "error": ""},
        {"text": SAD, "faces": pack(noise), "face_mask": pack(np.zeros(2, np.uint8)), "pieces": b"",
         "frames_sampled": 2, "faces_found": 0, "piece_count": 3, "status": OK, "error": ""},
    ])
    out = stage(batch).to_pylist()
    assert out[0]["status"] == EMPTY and "no face found" in out[0]["error"]
    assert all(out[0][c] is None for c in columns[:-1])
    assert out[1]["status"] == OK and out[1]["top_emotion"] == "sad" and out[1]["predicted"] == ["sad"]
    for e in EXPRESSIONS:
        assert out[1][prob_column(e)] == pytest.approx(out[1][prob_column(e, "text")], abs=1e-6)
        assert out[1][prob_column(e, "face")] is None and out[1][prob_column(e, "voice")] is None
    assert out[1]["model_id"] == packaged_model_id()


def test_score_with_no_checkpoint_finds_the_smile(ray_cluster, tmp_path):
    from fv2es.cli import main

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    write_clip(str(inp / "smile.mp4"), astronaut_frames(), fps=2)  # 2 s, no words
    write_clip(str(inp / "said.mp4"), astronaut_frames(), fps=2)
    (inp / "said.txt").write_text(SAD)
    write_clip(str(inp / "blank.mp4"), np.full((4, 320, 320, 3), 128, np.uint8), fps=2)
    assert main(["score", "--input", str(inp), "--output", str(out), "asr.mode=never"]) == 0

    segments = pq.read_table(str(out / "segments"))
    assert segments.column_names == segment_columns(list(EXPRESSIONS))
    rows = {r["video_uri"].rsplit("/", 1)[1]: r for r in segments.to_pylist()}
    smile, said, blank = rows["smile.mp4"], rows["said.mp4"], rows["blank.mp4"]

    assert smile["status"] == OK and smile["faces_found"] >= 3
    assert smile["top_emotion"] == "happy" and smile["predicted"] == ["happy"] and smile[prob_column("happy")] > 0.5
    for e in EXPRESSIONS:  # no words: the fused score is the face's own, and nothing else speaks
        assert smile[prob_column(e)] == pytest.approx(smile[prob_column(e, "face")], abs=1e-6)
        assert smile[prob_column(e, "text")] is None and smile[prob_column(e, "voice")] is None
    # Face and words: the mean of the two; the face says happy, the words sad.
    assert said["text"] == SAD and said[prob_column("happy", "face")] > 0.5
    assert max(EXPRESSIONS, key=lambda e: said[prob_column(e, "text")]) == "sad"
    for e in EXPRESSIONS:
        both = (said[prob_column(e, "face")] + said[prob_column(e, "text")]) / 2
        assert said[prob_column(e)] == pytest.approx(both, abs=1e-5)
    assert blank["status"] == EMPTY and blank["faces_found"] == 0

    meta = segments.schema.metadata
    assert json.loads(meta[b"fv2es.emotions"]) == list(EXPRESSIONS)
    assert meta[b"fv2es.model_id"].decode() == packaged_model_id() == smile["model_id"]
    assert meta[b"fv2es.checkpoint"].decode() == PACKAGED_URI
    assert json.loads(meta[b"fv2es.fusion_weights"])["weights"] == {"text": 0.5, "face": 0.5}
    assert json.loads(meta[b"fv2es.config"])["model"]["preset"] == "packaged_fer2013_minilm"
    assert json.loads((out / "_MODEL.json").read_text())["model_id"] == packaged_model_id()
    videos = pq.read_table(str(out / "videos.parquet"))
    per_video = {r["video_uri"].rsplit("/", 1)[1]: r for r in videos.to_pylist()}
    assert per_video["smile.mp4"]["dominant_emotion"] == "happy"
    # The per-video table carries the per-modality means too (of the segments that have the modality).
    assert set(ModelStage.columns(EXPRESSIONS)[:-3]) <= set(videos.column_names)
    assert per_video["smile.mp4"][prob_column("happy", "face")] == pytest.approx(smile[prob_column("happy", "face")])
    assert per_video["smile.mp4"][prob_column("happy", "text")] is None
    assert all(per_video["said.mp4"][prob_column(e, "voice")] is None for e in EXPRESSIONS)


def test_a_checkpoints_modalities_come_from_its_own_heads(checkpoint):
    stage = ModelStage(checkpoint)
    emotions = stage.emotions
    pieces = np.random.default_rng(0).random((3, 4, 32, 32), dtype=np.float32)
    batch = pa.Table.from_pylist([  # words and voice, no face frames
        {"text": "what a lovely day", "faces": b"", "face_mask": b"", "pieces": pack(pieces),
         "frames_sampled": 0, "faces_found": 0, "piece_count": 3, "status": OK, "error": ""}])
    out = stage(batch).to_pylist()[0]
    _, alone = stage.predictor.predict_rows_by_modality([out | {"faces": b"", "pieces": pack(pieces)}])
    for e, p_text, p_voice in zip(emotions, alone["text"][0], alone["voice"][0]):
        assert out[prob_column(e, "text")] == pytest.approx(p_text, abs=1e-6)
        assert out[prob_column(e, "voice")] == pytest.approx(p_voice, abs=1e-6)
        assert out[prob_column(e, "face")] is None
    assert out["status"] == OK and 0.0 < out[prob_column(emotions[0])] < 1.0
