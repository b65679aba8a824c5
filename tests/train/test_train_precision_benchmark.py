"""benchmarks/train_precision.py's bookkeeping: specs, and the summary of alternating rounds (its
training runs are the loop the learning checks run; timing it is the benchmark's, not a test's)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_precision", ROOT / "benchmarks" / "train_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_spec_names_preset_modalities_and_epochs(bench):
    assert bench.parse_spec("lf_rnn:a:24") == ("lf_rnn", "a", 24)
    assert bench.parse_spec("fv2es_tiny") == ("fv2es_tiny", "tav", 6)
    assert bench.parse_spec("lf_transformer:tv") == ("lf_transformer", "tv", 6)


def test_the_summary_pairs_the_precisions_seed_by_seed(bench):
    def run(precision, seed, utt_per_s, cpu, loss, acc):
        return {"spec": "lf_rnn:a:3", "precision": precision, "seed": seed, "utt_per_s": utt_per_s,
                "cpu_s_per_utt": cpu, "loss": loss, "test_acc": acc}

    runs = [run("fp32", 0, 100.0, 0.004, [1.0, 0.5, 0.2], 1.0), run("bf16", 0, 150.0, 0.003, [1.0, 0.6, 0.2], 0.5),
            run("fp32", 1, 300.0, 0.002, [1.1, 0.4, 0.1], 0.5), run("bf16", 1, 330.0, 0.002, [1.1, 0.4, 0.3], 1.0),
            run("fp32", 2, 200.0, 0.003, [0.9, 0.3, 0.1], 1.0), run("bf16", 2, 250.0, 0.0015, [0.9, 0.3, 0.1], 1.0),
            {**run("fp32", 0, 1.0, 1.0, [9.0], 0.0), "spec": "other"}]
    s = bench.summarise(runs, "lf_rnn:a:3")
    assert s["fp32"] == {"utt_per_s": 200.0, "cpu_s_per_utt": 0.003}  # medians over the seeds
    assert s["bf16"] == {"utt_per_s": 250.0, "cpu_s_per_utt": 0.002}
    assert s["speed_ratio_bf16_over_fp32"] == pytest.approx(1.25)
    assert s["cpu_ratio_bf16_over_fp32"] == pytest.approx(2 / 3)
    assert s["max_loss_diff"] == pytest.approx(0.2)  # seed 1, last epoch: 0.3 against 0.1
    assert s["test_acc"] == {"fp32": [1.0, 0.5, 1.0], "bf16": [0.5, 1.0, 1.0]}
    assert s["mean_test_acc"]["fp32"] == pytest.approx(2.5 / 3) == s["mean_test_acc"]["bf16"]
    assert s["last_loss"] == {"fp32": [0.2, 0.1, 0.1], "bf16": [0.2, 0.3, 0.1]}
