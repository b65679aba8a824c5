"""The seed's baselines through the training job (issue 24): their seed flags, the features
`fv2es preprocess --hand-crafted` writes into the shards, a seed-style command on those shards
(`fv2es train --model lf_rnn --hand-crafted ...`), the Ray Train job with `fv2es evaluate` and
`fv2es score` of its checkpoint, and learning on the demo corpus with each modality alone and all
three, as FV2ES's learning check does."""

import argparse
import dataclasses
import json
import shlex

import numpy as np
import pytest

from fv2es.config import config_from_dict, load_config
from fv2es.train.seed_cli import SeedFlagError, add_seed_arguments, seed_request

# A seed-style baseline command (the seed README lists these flags; it gives no baseline command),
# with our features' widths for -hfcs.
BASELINE_COMMAND = ("-lr=1e-3 -ep=1 -mod=tav -bs=8 --early-stop=6 --loss=bce --model=lf_rnn --hand-crafted "
                    "-hfcs 384 88 140 -aft=0 --num-emotions=6 --trans-nlayers=2")


def request(command: str):
    parser = argparse.ArgumentParser()
    add_seed_arguments(parser)
    return seed_request(parser.parse_args(shlex.split(command)), cuda_available=False)


def test_baseline_flags_choose_the_preset_and_its_features():
    req = request(BASELINE_COMMAND + " -nl 2 -hs 128 -bi --gru --trans-dim=32 -dr=0.3")
    assert req.overrides[:2] == ("model.preset=lf_rnn", "model.hfc_sizes=[384,88,140]")
    cfg = load_config(None, req.overrides).model
    assert (cfg.arch, cfg.hfc_sizes, cfg.trans_nlayers, cfg.modalities) == ("lf_rnn", (384, 88, 140), 2, "tav")
    # the seed's LF_RNN(args) never reads these: the network stays the seed's
    assert (cfg.num_layers, cfg.hidden_size, cfg.bidirectional, cfg.gru, cfg.dropout) == (1, 0, True, False, 0.1)
    assert cfg.trans_dim == 64  # --trans-dim is not read by the baselines
    notes = "\n".join(req.notes)
    for flag in ("--num-layers=2", "--hidden-size=128", "--bidirectional", "--gru"):
        assert f"{flag}: the seed parses it but builds LF_RNN(args) with its defaults" in notes
    assert "--trans-dim=32: the seed's lf_rnn does not read it" in notes
    assert "--dropout=0.3: the seed's lf_rnn does not read it" in notes
    assert "--audio-feature-type=0: selects the audio columns of MESM's IEMOCAP feature files" in notes
    assert load_config(None, request("--model=lf_transformer").overrides).model.arch == "lf_transformer"


@pytest.mark.parametrize(("command", "message"), [
    ("--hand-crafted", "--hand-crafted: hand-crafted features are not part of FV2ES end to end; they feed the "
                       "seed's baselines"),
    ("--model=lf_rnn -hfcs 300 144", "--hfc-sizes=300 144: give 3 sizes > 0"),
    ("--model=lf_rnn -aft=9", "--audio-feature-type=9: not one of 0-6"),
])
def test_baseline_flags_that_cannot_work_are_refused(command, message):
    with pytest.raises(SeedFlagError, match="^" + message):
        request(command)


def baseline_cfg(train_cfg, preset: str, modalities: str, **train):
    """The tests' training recipe (``train_cfg``) with a baseline's model config."""
    base = train_cfg(modalities, **train)
    return dataclasses.replace(base, model=config_from_dict({"model": {"preset": preset,
                                                                      "modalities": modalities}}).model)


@pytest.mark.slow
def test_preprocessing_writes_the_features_into_the_shards(demo_shards):
    from fv2es.media.spectrogram import num_frames
    from fv2es.models.handcrafted import HFC_SIZES, unpack_features
    from fv2es.pipeline.packing import unpack_faces
    from fv2es.shards import ExampleShards

    shards = ExampleShards(str(demo_shards / "shards"))
    assert shards.metadata()["hand_crafted"]["sizes"] == list(HFC_SIZES)
    table = shards.read(["id", "text", "faces", "start", "end", "hcf_text", "hcf_audio", "hcf_visual"], usable=True)
    voiced = []
    for row in table.to_pylist():
        text, audio, visual = (unpack_features(row[f"hcf_{m}"], w) for m, w in zip(("text", "audio", "visual"), HFC_SIZES))
        assert 0 < len(text) <= 100 and len(visual) == len(unpack_faces(row["faces"]))
        # a frame per 12.5 ms hop of the utterance's 16 kHz audio (decoding may round by a sample or two)
        assert abs(len(audio) - num_frames(round((row["end"] - row["start"]) * 16000))) <= 1
        voiced.append(float((audio[:, 42] > 0).mean()))
    assert table.num_rows == 90 and np.mean(voiced) > 0.5  # the demo corpus's voices have an F0


def test_the_preprocess_flags_reach_the_job(monkeypatch, tmp_path):
    from fv2es import preprocess
    from fv2es.cli import main

    seen = []
    monkeypatch.setattr(preprocess, "run_preprocess", lambda cfg, req: seen.append((cfg, req)))  # the job: above
    common = ["preprocess", "--input", str(tmp_path), "--output", str(tmp_path / "shards")]
    assert main([*common, "--dataset", "manifest", "--hand-crafted"]) == 0
    assert main([*common, "--dataset", "manifest", "--hand-crafted", "data.hand_crafted=false"]) == 0
    assert main([*common, "--dataset", "iemocap-hcf", "-aft", "4"]) == 0
    assert [cfg.data.hand_crafted for cfg, _ in seen] == [True, False, False]
    assert (seen[2][1].dataset, seen[2][1].audio_feature_type) == ("iemocap-hcf", 4)


def test_a_baseline_on_shards_without_features_is_one_line(tmp_path, capsys):
    from fv2es.cli import main
    from fv2es.emotions import IEMOCAP_EMOTIONS

    (tmp_path / "old").mkdir()  # what shards written without --hand-crafted (or before it existed) say
    (tmp_path / "old" / "metadata.json").write_text(json.dumps({"dataset": "manifest", "emotions": IEMOCAP_EMOTIONS,
                                                                "split_rows": {"train": 6, "valid": 2, "test": 2}}))
    assert main(["train", "--model=lf_rnn", "--datapath", str(tmp_path / "old"), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("these shards hold no hand-crafted features, which the seed's baselines (lf_rnn) "
                            "read; write them with `fv2es preprocess ... --hand-crafted`"), err


@pytest.mark.slow
def test_a_baseline_through_ray_train_then_evaluate_and_score(demo_shards, train_cfg, tmp_path, capsys):
    """The real Ray Train job (one worker) trains lf_rnn; `fv2es evaluate` of its checkpoint gives
    the run's test metrics; `fv2es score` of three clips from raw video computes the features the
    shards hold, so it gives the probabilities the checkpoint gives on those examples. (The seed's
    LF-RNN reads the padded batch's last step, so a probability depends on the batch's longest
    utterance: both sides here predict one utterance at a time.)"""
    import pyarrow.parquet as pq

    from fv2es.cli import main
    from fv2es.predict import Predictor
    from fv2es.score.job import ScoreRequest, run_score
    from fv2es.shards import ExampleShards
    from fv2es.train.job import TrainRequest, run_train

    shards = str(demo_shards / "shards")
    cfg = baseline_cfg(train_cfg, "lf_rnn", "tav", epochs=1, early_stop=1, lr=1e-3)
    best = run_train(cfg, TrainRequest(shards, str(tmp_path / "runs"), "lf-ray"))
    rows = [json.loads(line) for line in (tmp_path / "runs" / "lf-ray" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0] and rows[0]["train_utterances"] == 60
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", best["best_checkpoint"], "--data", shards, "--json", str(report)]) == 0
    again = json.loads(report.read_text())
    # argmax accuracy and AUC (thresholded F1 after one epoch sits on probabilities within float noise
    # of their thresholds, and the worker runs other torch threads than this process)
    assert again["utterances"] == 18 and again["thresholds"] == pytest.approx(best["thresholds"])
    assert again["acc"] == pytest.approx(best["test_acc"]) and again["avg_auc"] == pytest.approx(best["test_avg_auc"],
                                                                                                 abs=1e-3)

    manifest = [json.loads(line) for line in (demo_shards / "demo" / "manifest.jsonl").read_text().splitlines()]
    picked = [m for m in manifest if m["split"] == "test"][:3]
    (tmp_path / "three.jsonl").write_text("".join(json.dumps(m) + "\n" for m in picked))
    # fp32 as the Predictor below (score.precision auto would be bf16 on a CPU with native bf16).
    score_cfg = dataclasses.replace(cfg, asr=dataclasses.replace(cfg.asr, mode="never"),
                                    score=dataclasses.replace(cfg.score, precision="fp32"),
                                    resources=dataclasses.replace(cfg.resources, model_batch_size=1))
    run_score(score_cfg, ScoreRequest(str(tmp_path / "three.jsonl"), str(tmp_path / "scores"), best["best_checkpoint"]))
    segments = pq.read_table(str(tmp_path / "scores" / "segments")).to_pylist()
    assert sorted(r["utterance_id"] for r in segments) == sorted(m["id"] for m in picked)
    examples = {r["id"]: r for r in ExampleShards(shards).read(split="test").to_pylist()}
    predictor = Predictor.from_checkpoint(best["best_checkpoint"])
    scored = np.array([[r[f"prob_{e}"] for e in predictor.emotions] for r in segments])
    expected = np.concatenate([predictor.predict_rows([examples[r["utterance_id"]]]) for r in segments])
    assert all(r["status"] == "ok" for r in segments)
    # equal to float noise (MiniLM on a batch of other lengths: 2e-5), where utterances differ by 1e-3 or more
    np.testing.assert_allclose(scored, expected, atol=1e-4)
    assert np.abs(expected[:, None] - expected[None]).max() > 1e-3


@pytest.mark.slow
def test_a_seed_style_baseline_command_trains_on_fv2es_shards(demo_shards, tmp_path, monkeypatch, capsys):
    from fv2es.cli import main
    from fv2es.models import load_checkpoint
    from fv2es.train import job
    from fv2es.train.local import train_in_process

    monkeypatch.setattr(job, "run_train", train_in_process)  # Ray Train itself: test_train_job.py
    ours = ["--datapath", str(demo_shards / "shards"), "--output", str(tmp_path / "runs"), "--name", "lf"]
    assert main(["train", *shlex.split(BASELINE_COMMAND), *ours]) == 0
    assert "training lf_rnn (tav)" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "runs" / "lf" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and {"valid_avg_f1", "test_avg_f1", "thresholds"} <= set(rows[0])
    ckpt = load_checkpoint(str(tmp_path / "runs" / "lf" / "best.safetensors"))
    assert ckpt.config.arch == "lf_rnn" and len(ckpt.thresholds) == 6
    # and the checkpoint evaluates through the seed's --test flag
    assert main(["train", "--model=lf_rnn", "--test", "--ckpt", str(tmp_path / "runs" / "lf"), *ours]) == 0


@pytest.mark.slow
def test_the_seed_readme_command_trains_lf_transformer_on_fv2es_shards(demo_shards, tmp_path, monkeypatch, capsys):
    """The seed README's command as written (tests/train/test_seed_cli.py: README_COMMAND), with
    ``--model=lf_transformer --hand-crafted -hfcs 384 88 140`` for ``--model=mme2e`` and one epoch
    for its 30 (``train.epochs=1``), on shards `fv2es preprocess --hand-crafted` wrote (one clip of
    each emotion per split of them: -bs=2 and --trans-nlayers=4 make each utterance dearer than in
    the learning check); then the seed's ``--test`` of the run gives the run's own test metrics."""
    from fv2es.cli import main
    from fv2es.models import load_checkpoint
    from fv2es.train import evaluate, job, loop
    from fv2es.train.local import train_in_process
    from tests.train.test_seed_cli import README_COMMAND, one_clip_per_emotion_and_split

    monkeypatch.setattr(job, "run_train", train_in_process)  # Ray Train itself: the next test
    monkeypatch.setattr(loop, "train_threads", lambda *args: 1)  # see the learning check below
    command = README_COMMAND.replace("--model=mme2e", "--model=lf_transformer --hand-crafted -hfcs 384 88 140")
    assert command != README_COMMAND and command.startswith("fv2es train ")
    shards = one_clip_per_emotion_and_split(demo_shards / "shards", tmp_path / "shards")
    ours = ["--datapath", shards, "--output", str(tmp_path / "runs"), "--name", "lft", "train.epochs=1"]
    assert main([*shlex.split(command)[1:], *ours]) == 0
    captured = capsys.readouterr()
    assert "training lf_transformer (tav)" in captured.out
    for note in ("--cuda=0: no CUDA device: training on CPU", "--trans-dim=64: the seed's lf_transformer does "
                 "not read it", "--text-model-size=base: the seed's lf_transformer does not read it"):
        assert note in captured.err
    rows = [json.loads(line) for line in (tmp_path / "runs" / "lft" / "metrics.jsonl").read_text().splitlines()]
    # -bs=2 over the 6 training clips; -lr=4.5e-6 learns little in one epoch, but it runs as written
    assert [r["epoch"] for r in rows] == [0] and rows[0]["train_utterances"] == 6
    ckpt = load_checkpoint(str(tmp_path / "runs" / "lft" / "best.safetensors"))
    # --trans-nlayers=4 is the one transformer flag the seed's LF_Transformer reads; heads stay 4 / 2 / 5
    assert (ckpt.config.arch, ckpt.config.trans_nlayers, ckpt.config.hfc_sizes) == ("lf_transformer", 4, (384, 88, 140))
    assert len(ckpt.model.transformers["t"].encoder.layers) == 4
    reports = []
    run_evaluate = evaluate.run_evaluate
    monkeypatch.setattr(evaluate, "run_evaluate", lambda *a, **k: reports.append(run_evaluate(*a, **k)) or reports[-1])
    assert main(["train", "--model=lf_transformer", "--test", "--ckpt", str(tmp_path / "runs" / "lft"), *ours]) == 0
    assert [r["utterances"] for r in reports] == [6]
    assert reports[0]["acc"] == pytest.approx(rows[0]["test_acc"])
    assert reports[0]["avg_f1"] == pytest.approx(rows[0]["test_avg_f1"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("modalities", ["t", "a", "v", "tav"])
# Epochs: LF-RNN's audio run first picks a >= 0.8 epoch at 17 (its valid F1 peaks at epochs 16-17);
# LF-Transformer's visual run (fp32, 24 epochs) has valid F1 1.0 and test accuracy 1.0 at epochs
# 13-17 and 0.78 at epoch 9 (where 10 epochs stopped it); the other three are at 1.0 from epoch 8.
@pytest.mark.parametrize(("preset", "lr", "epochs"), [("lf_rnn", 1e-3, 24), ("lf_transformer", 3e-4, 16)])
def test_a_baseline_learns_each_modality_of_the_demo_corpus(demo_shards, train_cfg, preset, lr, epochs, modalities,
                                                            monkeypatch):
    from fv2es.train import loop
    from fv2es.train.job import TrainRequest
    from fv2es.train.local import train_in_process

    # One torch thread: on a loaded 2-core machine two OpenMP threads spin-wait (an LSTM step took
    # 45 s instead of 0.8 s).
    monkeypatch.setattr(loop, "train_threads", lambda *args: 1)
    # Epochs of 8 batches, the features read from the shards: 0.5 s (LF-RNN) and 3.1 s (LF-Transformer)
    # each; the transformer wants the smaller learning rate (at 1e-3 its visual run picks a 0.78 epoch).
    # fp32: the seed trained its baselines in fp32, and train.precision=auto is bf16 on a CPU with native
    # bf16, where this seed's LF-RNN audio run picks a 0.67 epoch (best epoch 15; fp32 on the same machine:
    # 0.89). That is one seed's noise, not bf16's fault: over six seeds (benchmarks/train_precision.py,
    # lf_rnn:a:24) fp32 and bf16 reach mean test accuracy 0.96 and 0.94, each below 1.0 on other seeds
    # (fp32 0.94, 0.83; bf16 0.83, 0.83). A one-seed check fixes the precision so it tests learning alone.
    cfg = baseline_cfg(train_cfg, preset, modalities, epochs=epochs, early_stop=epochs, lr=lr, precision="fp32")
    req = TrainRequest(str(demo_shards / "shards"), str(demo_shards / "runs"), f"{preset}-{modalities}")
    best = train_in_process(cfg, req)
    assert best["test_acc"] >= 0.8, best
