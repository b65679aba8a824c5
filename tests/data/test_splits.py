from collections import Counter

import pytest

from fv2es.config import DataConfig
from fv2es.data.splits import (
    assign_random_splits,
    assign_split_lists,
    mesm_split_files,
    read_split_lists,
    split_sizes,
)
from fv2es.data.utterance import Utterance

SEED_FRACTIONS = DataConfig().split_ratios  # the one default: the seed's 70/10/20


def utterances(n, labels=lambda i: ()):
    return [Utterance(id=f"u{i:03d}", video_uri=f"v{i}.mp4", labels=labels(i)) for i in range(n)]


def split_counts(rows):
    return dict(Counter(u.split for u in rows))


def test_split_sizes_are_exact_and_sum_to_n():
    assert SEED_FRACTIONS == (0.7, 0.1, 0.2)
    assert split_sizes(100, SEED_FRACTIONS) == (70, 10, 20)
    assert split_sizes(7380, SEED_FRACTIONS) == (5166, 738, 1476)
    for n in range(0, 50):
        sizes = split_sizes(n, SEED_FRACTIONS)
        assert sum(sizes) == n and all(abs(s - n * f) < 1 for s, f in zip(sizes, (0.7, 0.1, 0.2)))
    assert split_sizes(10, (0.5, 0.25, 0.25)) == (5, 3, 2)
    with pytest.raises(ValueError, match="summing to 1"):
        split_sizes(10, (0.5, 0.5, 0.5))


def test_random_split_has_exact_proportions_for_100():
    out = assign_random_splits(utterances(100), SEED_FRACTIONS, seed=0)
    assert split_counts(out) == {"train": 70, "valid": 10, "test": 20}
    assert [u.id for u in out] == [u.id for u in utterances(100)]  # input order kept


def test_random_split_is_deterministic_by_seed_and_ignores_input_order():
    rows = utterances(100)
    first = {u.id: u.split for u in assign_random_splits(rows, SEED_FRACTIONS, seed=7)}
    again = {u.id: u.split for u in assign_random_splits(rows, SEED_FRACTIONS, seed=7)}
    reversed_order = {u.id: u.split for u in assign_random_splits(rows[::-1], SEED_FRACTIONS, seed=7)}
    other_seed = {u.id: u.split for u in assign_random_splits(rows, SEED_FRACTIONS, seed=8)}
    assert first == again == reversed_order
    assert first != other_seed


def test_stratified_split_splits_each_class_in_proportion():
    rows = utterances(100, labels=lambda i: ("ang",) if i < 50 else ("neu",))
    out = assign_random_splits(rows, SEED_FRACTIONS, seed=3, stratify=True)
    for label in ("ang", "neu"):
        assert split_counts(u for u in out if u.labels == (label,)) == {"train": 35, "valid": 5, "test": 10}


def test_random_split_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="duplicate utterance ids"):
        assign_random_splits(utterances(3) + utterances(1), SEED_FRACTIONS)


def test_split_lists_from_files(tmp_path):
    (tmp_path / "train_split.txt").write_text("u000\r\nu001\n\n# a comment\nu002\n")
    (tmp_path / "valid_split.txt").write_text("u003\nmissing_valid\n")
    (tmp_path / "test_split.txt").write_text("u004\n")
    files = mesm_split_files(str(tmp_path) + "/")
    assert files["valid"] == f"{tmp_path}/valid_split.txt"
    lists = read_split_lists(files)
    assert lists == {"train": ["u000", "u001", "u002"], "valid": ["u003", "missing_valid"], "test": ["u004"]}

    result = assign_split_lists(utterances(7), lists)
    assert [u.split for u in result.utterances] == ["train", "train", "train", "valid", "test", None, None]
    assert result.unlisted == ("u005", "u006")
    assert result.not_found == {"train": (), "valid": ("missing_valid",), "test": ()}


def test_split_lists_reject_conflicts_and_unknown_names():
    with pytest.raises(ValueError, match="'u001' is listed in both 'train' and 'test'"):
        assign_split_lists(utterances(3), {"train": ["u001"], "test": ["u001"]})
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        assign_split_lists(utterances(3), {"dev": ["u001"]})


def test_every_split_gets_each_class_of_three_or_more():
    """5 clips of a class at 70/10/20 round to 4/0/1: validation would miss that class."""
    from fv2es.data.splits import fill_empty_splits

    assert split_sizes(5, SEED_FRACTIONS) == (4, 0, 1)
    assert fill_empty_splits((4, 0, 1), SEED_FRACTIONS) == (3, 1, 1)
    assert fill_empty_splits((3, 0, 0), SEED_FRACTIONS) == (1, 1, 1)
    assert fill_empty_splits((2, 0, 0), SEED_FRACTIONS) == (2, 0, 0)  # too few: left as they are
    assert fill_empty_splits((10, 0, 0), (1.0, 0.0, 0.0)) == (10, 0, 0)  # no share asked: none given
    assert fill_empty_splits((70, 10, 20), SEED_FRACTIONS) == (70, 10, 20)
    labels = ("ang", "exc", "fru", "hap", "neu", "sad")
    rows = utterances(30 + 2, labels=lambda i: (labels[i % 6],) if i < 30 else ("rare",))
    out = assign_random_splits(rows, SEED_FRACTIONS, seed=0, stratify=True)
    for label in labels:
        assert split_counts(u for u in out if u.labels == (label,)) == {"train": 3, "valid": 1, "test": 1}
    assert split_counts(u for u in out if u.labels == ("rare",)) == {"train": 1, "test": 1}  # two: as rounded


def test_demo_corpus_splits_give_every_class_a_valid_and_test_clip():
    """`fv2es demo-corpus --videos 30`: 5 clips per class; preprocess + train needs each split."""
    import numpy as np

    from fv2es.media.democorpus import _stratified_splits

    for videos in (30, 18, 60, 90):
        labels = np.resize(np.arange(6), videos)
        splits = _stratified_splits(labels, np.random.default_rng(0))
        for k in range(6):
            assert {s for s, label in zip(splits, labels) if label == k} == {"train", "valid", "test"}, videos
    # The demo's own corpora keep their splits: 15 clips a class are 10/2/3, 10 are 7/1/2.
    for videos, per_class in ((90, {"train": 10, "valid": 2, "test": 3}), (60, {"train": 7, "valid": 1, "test": 2})):
        labels = np.resize(np.arange(6), videos)
        splits = _stratified_splits(labels, np.random.default_rng(0))
        assert dict(Counter(s for s, label in zip(splits, labels) if label == 0)) == per_class
