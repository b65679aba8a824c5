"""MESM's processed release imported into shards (`fv2es preprocess --dataset iemocap-hcf|mosei-hcf`,
fv2es.preprocess.import_mesm) and a baseline trained on them with the seed's own -hfcs, on small
files written in MESM's layout (their classes are shifted means; whether a baseline learns real
features is the demo corpus's check, test_baseline_training.py)."""

import json
import pickle

import numpy as np
import pytest

from fv2es.emotions import IEMOCAP_EMOTIONS, MOSEI_EMOTIONS
from fv2es.models.handcrafted import unpack_features
from fv2es.shards import ExampleShards

DESCRIPTORS = 763  # MESM's per-frame audio descriptors (the seed reads columns up to 762)
SPLITS = {"train": 12, "valid": 6, "test": 6}


def dump(obj, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # as the seed's src.utils.save writes them


def write_iemocap_release(root, rng):
    """MESM's IEMOCAP layout: split lists, meta.pkl, and per phase the three feature files; each
    utterance's features carry its class (a shifted mean), so a baseline can learn them."""
    meta, ids = {}, {}
    for phase, n in SPLITS.items():
        ids[phase] = [f"Ses0{1 + i % 5}F_{phase}{i:02d}_{'F' if i % 2 else 'M'}{i:03d}" for i in range(n)]
        text, audio, video = {}, {}, {}
        for i, uid in enumerate(ids[phase]):
            label = IEMOCAP_EMOTIONS[i % 6]
            meta[uid] = {"label": label, "text": f"utterance {uid}"}
            shift = 2.0 * IEMOCAP_EMOTIONS.index(label)
            text[uid] = (rng.normal(size=(3, 300)) + shift).astype("f4")
            audio[uid] = {side: (rng.normal(size=(DESCRIPTORS, 5)) + shift).astype("f4") for side in "LR"}
            video[uid] = {f"image_{s}_{k}": (rng.normal(size=50) + shift).astype("f4") for s in "LR" for k in range(2)}
        for name, obj in (("text", text), ("audio", audio), ("video", video)):
            dump(obj, root / "IEMOCAP_HCF_FEATURES" / f"{phase}_{name}_features.pt")
        (root / "IEMOCAP_SPLIT").mkdir(parents=True, exist_ok=True)
        (root / "IEMOCAP_SPLIT" / f"{phase}_split.txt").write_text("\n".join(ids[phase]) + "\n")
    dump(meta, root / "IEMOCAP_RAW_PROCESSED" / "meta.pkl")
    return meta, ids


def test_iemocap_release_imports_and_trains_with_the_seeds_hfc_sizes(tmp_path, monkeypatch, capsys):
    from fv2es.cli import main
    from fv2es.data.hcf import AUDIO_FEATURE_TYPES
    from fv2es.models import load_checkpoint
    from fv2es.train import job, loop
    from fv2es.train.local import train_in_process

    rng = np.random.default_rng(0)
    meta, ids = write_iemocap_release(tmp_path / "data", rng)
    shards = tmp_path / "shards"
    assert main(["preprocess", "--dataset", "iemocap-hcf", "--input", str(tmp_path / "data"),
                 "--output", str(shards), "-aft", "3"]) == 0
    info = ExampleShards(str(shards)).metadata()
    assert info["hand_crafted"]["sizes"] == [300, 34, 35] and info["split_rows"] == SPLITS
    assert info["class_counts"]["train"] == {e: 2 for e in IEMOCAP_EMOTIONS}
    rows = {r["id"]: r for r in ExampleShards(str(shards)).read().to_pylist()}
    assert sorted(rows) == sorted(meta)
    uid = ids["valid"][1]  # F speaker in a session F: the left channel and frames
    features = pickle.loads((tmp_path / "data" / "IEMOCAP_HCF_FEATURES" / "valid_audio_features.pt").read_bytes())
    np.testing.assert_array_equal(unpack_features(rows[uid]["hcf_audio"], 34),
                                  features[uid]["L"].T[:, list(AUDIO_FEATURE_TYPES[3])])
    assert rows[uid]["labels"] == [meta[uid]["label"]] and rows[uid]["split"] == "valid"
    assert rows[uid]["text"] == meta[uid]["text"] and rows[uid]["status"] == "ok"

    # the seed's own -hfcs for these files; the preset's are refused in one line naming the right ones
    monkeypatch.setattr(job, "run_train", train_in_process)
    monkeypatch.setattr(loop, "train_threads", lambda *args: 1)
    ours = ["--datapath", str(shards), "--output", str(tmp_path / "runs"), "--name", "mesm"]
    assert main(["train", "--model=lf_rnn", *ours]) == 2
    assert "give -hfcs 300 34 35" in capsys.readouterr().err
    assert main(["train", "--model=lf_rnn", "--hand-crafted", "-hfcs", "300", "34", "35", "-ep=3", "-bs=4",
                 *ours]) == 0
    rows = [json.loads(line) for line in (tmp_path / "runs" / "mesm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_utterances"] for r in rows] == [12] * 3 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    ckpt = load_checkpoint(str(tmp_path / "runs" / "mesm" / "best.safetensors"))
    assert ckpt.config.hfc_sizes == (300, 34, 35) and ckpt.model.rnns["a"].input_size == 34


def test_mosei_release_imports_multi_hot_labels(tmp_path):
    from fv2es.preprocess import PreprocessRequest, import_mesm

    rng = np.random.default_rng(1)
    root = tmp_path / "data"
    meta = {}
    for phase, n in (("train", 3), ("valid", 1), ("test", 2)):
        phase_ids = [f"vid{phase}_{i}" for i in range(n)]
        for i, uid in enumerate(phase_ids):
            meta[uid] = {"label": [float(k in (i % 6, (i + 2) % 6)) for k in range(6)], "text": "words"}
        dump({"id": np.array(phase_ids[::-1]), "text": [rng.normal(size=(2, 300)) for _ in phase_ids],
              "audio": [rng.normal(size=(4, 74)) for _ in phase_ids],
              "vision": [rng.normal(size=(3, 35)) for _ in phase_ids]},
             root / "MOSEI_HCF_FEATURES" / f"mosei_senti_hcf_{phase}.pkl")
        (root / "MOSEI_SPLIT").mkdir(parents=True, exist_ok=True)
        (root / "MOSEI_SPLIT" / f"{phase}_split.txt").write_text("\n".join(phase_ids))
    dump(meta, root / "MOSEI_RAW_PROCESSED" / "meta.pkl")
    info = import_mesm(PreprocessRequest("mosei-hcf", str(root), str(tmp_path / "shards")))
    assert info["hand_crafted"]["sizes"] == [300, 74, 35] and info["emotions"] == list(MOSEI_EMOTIONS)
    rows = {r["id"]: r for r in ExampleShards(str(tmp_path / "shards")).read().to_pylist()}
    assert rows["vidtrain_1"]["labels"] == ["disgust", "happy"]
    assert rows["vidtrain_1"]["target"] == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    hcf = pickle.loads((root / "MOSEI_HCF_FEATURES" / "mosei_senti_hcf_train.pkl").read_bytes())
    at = list(hcf["id"]).index("vidtrain_1")  # the file lists its ids in another order than the split
    np.testing.assert_array_equal(unpack_features(rows["vidtrain_1"]["hcf_audio"], 74), hcf["audio"][at].astype("f4"))
    (root / "MOSEI_SPLIT" / "test_split.txt").write_text("vidtest_0\nnot_there")
    with pytest.raises(Exception, match="test_split.txt: not_there is not in"):
        import_mesm(PreprocessRequest("mosei-hcf", str(root), str(tmp_path / "shards")))
