"""MESM's hand-crafted feature files (fv2es.data.hcf) on small files written in their layout:
what the seed keeps of each utterance, both file formats, and files that would run code."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fv2es.data.hcf import (
    AUDIO_FEATURE_TYPES,
    HCFFormatError,
    hfc_sizes,
    load_feature_file,
    read_iemocap_hcf,
    read_mosei_hcf,
)

FIXTURES = Path(__file__).parent / "fixtures"
DESCRIPTORS = 763  # MESM's per-frame audio descriptors (the seed reads columns up to 762)
LEFT, RIGHT, EMPTY = "Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses02M_script01_1_M002"


def iemocap_features(rng):
    text = {LEFT: rng.normal(size=(4, 300)).astype("f4"), RIGHT: [rng.normal(size=300) for _ in range(2)],
            EMPTY: []}
    audio = {u: {"L": rng.normal(size=(DESCRIPTORS, t)).astype("f4"), "R": rng.normal(size=(DESCRIPTORS, t)).astype("f4")}
             for u, t in ((LEFT, 7), (RIGHT, 5), (EMPTY, 3))}
    video = {}
    for u, n in ((LEFT, 3), (RIGHT, 4), (EMPTY, 2)):
        frames = {f"image_{s}_{i}": rng.normal(size=50).astype("f4") for s in "LR" for i in range(n)}
        video[u] = frames
    del video[RIGHT]["image_R_1"]  # a frame the face tracker lost: skipped, as the seed does
    return text, audio, video


def write_iemocap(root: Path, phase: str, parts, dump) -> None:
    folder = root / "IEMOCAP_HCF_FEATURES"
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in zip(("text", "audio", "video"), parts):
        dump(obj, folder / f"{phase}_{name}_features.pt")


def pickle_dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # as the seed's src.utils.save writes them


def test_the_audio_column_sets_are_the_seeds():
    seed = json.loads((FIXTURES / "seed_audio_feature_types.json").read_text())["types"]
    assert {int(k): tuple(v["columns"]) for k, v in seed.items()} == AUDIO_FEATURE_TYPES
    assert len(AUDIO_FEATURE_TYPES[0]) == 144  # the seed's -hfcs default audio width


@pytest.mark.parametrize("fmt", ["pickle", "torch"])
def test_iemocap_keeps_what_the_seed_keeps(tmp_path, fmt):
    rng = np.random.default_rng(0)
    text, audio, video = iemocap_features(rng)
    if fmt == "pickle":
        write_iemocap(tmp_path, "valid", (text, audio, video), pickle_dump)
    else:  # a torch.save zip holding tensors
        as_tensors = {u: {k: torch.from_numpy(v) for k, v in ch.items()} for u, ch in audio.items()}
        write_iemocap(tmp_path, "valid", (text, as_tensors, video), torch.save)
    got = read_iemocap_hcf(str(tmp_path), "valid")
    assert list(got) == [LEFT, RIGHT, EMPTY]
    cols = list(AUDIO_FEATURE_TYPES[0])
    left, right, empty = got[LEFT], got[RIGHT], got[EMPTY]
    np.testing.assert_array_equal(left.text, text[LEFT])
    np.testing.assert_array_equal(right.text, np.stack(text[RIGHT]).astype("f4"))
    assert empty.text.shape == (0, 300)
    # the speaker's channel: F000 in session F is on the left, M001 on the right
    np.testing.assert_array_equal(left.audio, audio[LEFT]["L"].T[:, cols])
    np.testing.assert_array_equal(right.audio, audio[RIGHT]["R"].T[:, cols])
    assert left.audio.dtype == np.float32 and left.audio.flags.c_contiguous
    # frames 0 .. len/2 - 1 of the speaker's side, missing ones skipped, last 35 values each
    np.testing.assert_array_equal(left.visual, np.stack([video[LEFT][f"image_L_{i}"][-35:] for i in range(3)]))
    np.testing.assert_array_equal(right.visual, np.stack([video[RIGHT][f"image_R_{i}"][-35:] for i in (0, 2)]))
    assert hfc_sizes(got) == (300, 144, 35)


def test_aft_selects_its_columns(tmp_path):
    rng = np.random.default_rng(1)
    parts = iemocap_features(rng)
    write_iemocap(tmp_path, "test", parts, pickle_dump)
    for aft, width in ((1, 120), (3, 34), (6, 306)):
        got = read_iemocap_hcf(str(tmp_path), "test", audio_feature_type=aft)
        assert hfc_sizes(got) == (300, width, 35)
        np.testing.assert_array_equal(got[LEFT].audio, parts[1][LEFT]["L"].T[:, list(AUDIO_FEATURE_TYPES[aft])])
    with pytest.raises(HCFFormatError, match="-aft=7: not one of 0, 1"):
        read_iemocap_hcf(str(tmp_path), "test", audio_feature_type=7)


def test_iemocap_layout_errors_name_the_file_and_utterance(tmp_path):
    rng = np.random.default_rng(2)
    text, audio, video = iemocap_features(rng)
    del video[RIGHT]
    write_iemocap(tmp_path, "train", (text, audio, video), pickle_dump)
    with pytest.raises(HCFFormatError, match=f"train_video_features.pt: no entry for {RIGHT}"):
        read_iemocap_hcf(str(tmp_path), "train")
    with pytest.raises(HCFFormatError, match="valid_text_features.pt: not found"):
        read_iemocap_hcf(str(tmp_path), "valid")
    text, audio, video = iemocap_features(rng)
    audio[LEFT]["L"] = audio[LEFT]["L"][:100]
    write_iemocap(tmp_path, "train", (text, audio, video), pickle_dump)
    with pytest.raises(HCFFormatError, match=f"{LEFT} has 100 descriptors per frame; -aft=0 reads columns up to 762"):
        read_iemocap_hcf(str(tmp_path), "train")


class RunsCode:
    """What a hostile pickle does: make unpickling call a function of its choice."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_needs_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    pickle_dump({"id": np.array(["a"]), "text": [RunsCode(marker)]}, path)
    with pytest.raises(HCFFormatError, match=r"evil.pkl: the pickle needs posix\.system, which is not a numpy "
                                             r"array or a builtin; refused"):
        load_feature_file(str(path))
    assert not marker.exists()
    # a torch zip whose pickle needs a global beyond tensors and numpy: refused by weights_only
    torch.save({"x": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(HCFFormatError, match=r"evil.pt: torch.load\(weights_only=True\) refused it"):
        load_feature_file(str(tmp_path / "evil.pt"))
    assert not marker.exists()


def test_numpy_scalars_object_arrays_and_containers_load(tmp_path):
    obj = {"ids": np.array(["x", "y"]), "o": np.array(["ab", 3], dtype=object), "s": np.float32(2.5),
           "t": (1, {2}, frozenset([3]), b"raw", bytearray(b"ba"), 1j)}
    for protocol in (2, 4, 5):
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        got = load_feature_file(str(path))
        assert got["ids"].tolist() == ["x", "y"] and got["o"].tolist() == ["ab", 3]
        assert got["s"] == np.float32(2.5) and got["t"] == obj["t"]


def test_mosei_reads_the_seeds_pickle(tmp_path):
    rng = np.random.default_rng(3)
    ids = ["-3g5yACwYnA_0", "-3g5yACwYnA_1", "zhpQhgha_KU_2"]
    hcf = {"id": np.array(ids), "text": rng.normal(size=(3, 50, 300)).astype("f4"),
           "audio": [rng.normal(size=(50, 74)).astype("f4") for _ in ids],
           "vision": [rng.normal(size=(50, 35)) for _ in ids]}
    folder = tmp_path / "MOSEI_HCF_FEATURES"
    folder.mkdir()
    pickle_dump(hcf, folder / "mosei_senti_hcf_test.pkl")
    got = read_mosei_hcf(str(tmp_path), "test")
    assert list(got) == ids and hfc_sizes(got) == (300, 74, 35)
    np.testing.assert_array_equal(got[ids[2]].audio, hcf["audio"][2])
    np.testing.assert_array_equal(got[ids[1]].visual, hcf["vision"][1].astype("f4"))
    hcf["vision"] = hcf["vision"][:2]
    pickle_dump(hcf, folder / "mosei_senti_hcf_train.pkl")
    with pytest.raises(HCFFormatError, match="3 ids but 3 text, 3 audio and 2 vision entries"):
        read_mosei_hcf(str(tmp_path), "train")


def test_read_features_feed_the_seeds_baseline(tmp_path):
    from fv2es.config import config_from_dict
    from fv2es.models import create_model
    from fv2es.models.baselines import HCFCollate

    write_iemocap(tmp_path, "test", iemocap_features(np.random.default_rng(4)), pickle_dump)
    got = read_iemocap_hcf(str(tmp_path), "test")
    cfg = config_from_dict({"model": {"preset": "lf_rnn", "hfc_sizes": list(hfc_sizes(got))}}).model
    model = create_model(cfg).eval()
    with torch.no_grad():
        logits = model(HCFCollate(cfg.hfc_sizes)([u.sample() for u in got.values()]))
    assert logits.shape == (3, 6) and torch.isfinite(logits).all()
