"""Preprocessing a manifest without transcripts: speech to text fills the text, metadata.json says so."""

import json

import pytest

from fv2es.config import config_from_dict
from fv2es.preprocess import PreprocessRequest, run_preprocess
from fv2es.shards import ExampleShards

pytestmark = pytest.mark.slow


def test_rows_without_text_are_transcribed(ray_cluster, speech, tmp_path):
    video = speech.video(tmp_path / "two.mp4", speech.wav("two.wav"))
    a, b = speech.sentences("two.wav")
    rows = [
        {"id": "a", "video_uri": str(video), "start": a["start"] - 0.2, "end": a["end"] + 0.2, "label": "ang",
         "split": "train"},
        {"id": "b", "video_uri": str(video), "start": b["start"] - 0.2, "end": b["end"] + 0.2, "label": "sad",
         "split": "test"},
        {"id": "given", "video_uri": str(video), "start": 0.0, "end": 3.0, "text": "words the manifest gave",
         "label": "neu", "split": "valid"},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "decode": {"max_side": 320}})
    out = tmp_path / "shards"
    meta = run_preprocess(cfg, PreprocessRequest("manifest", str(manifest), str(out)))

    texts = {r["id"]: r["text"] for r in ExampleShards(str(out)).read(columns=["id", "text"]).to_pylist()}
    assert speech.wer(a["text"], texts["a"]) <= 0.35, texts["a"]
    assert speech.wer(b["text"], texts["b"]) <= 0.35, texts["b"]
    assert texts["given"] == "words the manifest gave"  # auto: a manifest's text is never replaced
    assert meta["asr"]["utterances_without_text"] == 2 and meta["asr"]["filled_by_asr"] == 2
    assert meta["asr"]["config"]["mode"] == "auto"
    assert json.loads((out / "metadata.json").read_text())["asr"] == meta["asr"]
