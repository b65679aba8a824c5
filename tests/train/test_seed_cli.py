import argparse
import re
import shlex
from pathlib import Path

import pytest

from fv2es.commands.common import add_config_arguments
from fv2es.config import load_config
from fv2es.train.seed_cli import (
    SEED_OPTIONS,
    SeedFlagError,
    SeedRequest,
    add_seed_arguments,
    seed_request,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The seed README's training command, exactly as written there (trailing space included), with
# ``fv2es train`` in place of ``python main.py``.
README_COMMAND = (
    "fv2es train -lr=4.5e-6 -ep=30 -mod=tav -bs=2 --img-interval=500 --early-stop=6 --loss=bce --cuda=0 "
    "--model=mme2e --num-emotions=6 --trans-dim=64 --trans-nlayers=4 --trans-nheads=4 --text-lr-factor=10 "
    "--text-model-size=base --text-max-len=100 "
)
README_OVERRIDES = [
    "train.batch_size=2",
    "train.lr=4.5e-06",
    "train.epochs=30",
    "train.early_stop=6",
    "train.text_lr_factor=10.0",
    "model.trans_dim=64",
    "model.trans_nlayers=4",
    "model.trans_nheads=4",
    "model.text_max_len=100",
    "decode.img_interval_ms=500",
    "train.loss=bce",
    "model.text_model=albert-base-v2",
    "model.modalities=tav",
]

# Every option string of the seed CLI (its README's usage block).
SEED_FLAGS = {
    "-bs", "--batch-size", "-lr", "--learning-rate", "-wd", "--weight-decay", "-ep", "--epochs",
    "-es", "--early-stop", "-cu", "--cuda", "-cl", "--clip", "-sc", "--scheduler", "-se", "--seed",
    "--loss", "--optim", "--text-lr-factor", "-mo", "--model", "--text-model-size", "--fusion",
    "--feature-dim", "-hfcs", "--hfc-sizes", "--trans-dim", "--trans-nlayers", "--trans-nheads",
    "-aft", "--audio-feature-type", "--num-emotions", "--img-interval", "--hand-crafted",
    "--text-max-len", "--datapath", "--dataset", "-mod", "--modalities", "--valid", "--test", "--ckpt",
    "--ckpt-mod", "-dr", "--dropout", "-nl", "--num-layers", "-hs", "--hidden-size", "-bi",
    "--bidirectional", "--gru",
}


def seed_parser(with_config: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fv2es train")
    if with_config:  # as `fv2es train` builds it: --config/-c and KEY=VALUE positionals beside the seed flags
        add_config_arguments(parser)
    add_seed_arguments(parser)
    return parser


def parse(command: str, with_config: bool = False) -> argparse.Namespace:
    return seed_parser(with_config).parse_args(shlex.split(command))


def request(command: str, cuda_available: bool = False) -> SeedRequest:
    return seed_request(parse(command), cuda_available=cuda_available)


def readme_argv() -> list[str]:
    argv = shlex.split(README_COMMAND)
    assert argv[:2] == ["fv2es", "train"]
    return argv[2:]


def test_readme_command_maps_onto_config_overrides():
    args = seed_parser().parse_args(readme_argv())
    assert args.learning_rate == 4.5e-6 and args.modalities == "tav" and args.cuda == "0"
    req = seed_request(args, cuda_available=False)
    assert list(req.overrides) == README_OVERRIDES
    assert list(req.notes) == [
        "--img-interval=500: sets decode.img_interval_ms, which only affects preprocessing; "
        "shards already hold sampled frames",
        "--cuda=0: no CUDA device: training on CPU",
    ]
    assert (req.num_emotions, req.valid_only, req.test_only, req.ckpt, req.ckpt_mod) == (6, False, False, None, None)
    assert not req.evaluate_only


@pytest.mark.parametrize("config", ["paper.yaml", "tiny.yaml"])
def test_readme_overrides_give_the_seed_configuration(config):
    overrides = seed_request(seed_parser().parse_args(readme_argv()), cuda_available=False).overrides
    cfg = load_config(CONFIGS / config, overrides)
    assert cfg.train.lr == pytest.approx(4.5e-6) and isinstance(cfg.train.lr, float)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.early_stop) == (30, 2, 6)
    assert cfg.train.loss == "bce" and cfg.train.text_lr_factor == 10.0
    assert cfg.model.modalities == "tav"
    assert (cfg.model.trans_dim, cfg.model.trans_nlayers, cfg.model.trans_nheads) == (64, 4, 4)
    assert cfg.model.text_model == "albert-base-v2" and cfg.model.text_max_len == 100
    assert cfg.decode.img_interval_ms == 500
    assert not cfg.train.use_gpu
    seed_request(seed_parser().parse_args(readme_argv()), cuda_available=False).check(
        cfg.model.emotions, cfg.model.modalities
    )


def test_readme_command_beside_config_and_key_value_overrides():
    args = parse("--config configs/tiny.yaml " + " ".join(readme_argv()) + " train.seed=3", with_config=True)
    assert args.config == "configs/tiny.yaml" and args.overrides == ["train.seed=3"]
    assert (args.cuda, args.clip) == ("0", None)  # -c (config) does not swallow -cu/-cl
    assert list(seed_request(args, cuda_available=False).overrides) == README_OVERRIDES


def test_parser_registers_exactly_the_seed_flags():
    registered = {flag for flags, _ in SEED_OPTIONS for flag in flags}
    assert registered == SEED_FLAGS
    parser_flags = {s for a in seed_parser()._actions for s in a.option_strings} - {"-h", "--help"}
    assert parser_flags == SEED_FLAGS


EVERY_FLAG = (
    "-bs=4 -lr=1e-4 -wd=0.01 -ep=3 -es=2 -cu=1 -cl=2.5 -sc -se=7 --loss=ce --optim=sgd --text-lr-factor=5 "
    "-mo=mme2e --text-model-size=large --fusion=mean --feature-dim=128 --trans-dim=32 --trans-nlayers=2 "
    "--trans-nheads=2 --num-emotions=6 --img-interval=250 --text-max-len=50 --datapath=s3://data/shards "
    "--dataset=mosei -mod=ta --valid --test --ckpt=ckpt/model.safetensors --ckpt-mod=t -dr=0.2 -nl=2 "
    "-hs=128 -bi --gru"
)


def test_every_seed_flag_is_accepted():
    args = parse(EVERY_FLAG + " -hfcs 300 144 35 -aft=1 --hand-crafted")
    assert vars(args) == {
        "batch_size": 4, "learning_rate": 1e-4, "weight_decay": 0.01, "epochs": 3, "early_stop": 2,
        "cuda": "1", "clip": 2.5, "scheduler": True, "seed": 7, "loss": "ce", "optim": "sgd",
        "text_lr_factor": 5.0, "model": "mme2e", "text_model_size": "large", "fusion": "mean",
        "feature_dim": 128, "hfc_sizes": [300, 144, 35], "trans_dim": 32, "trans_nlayers": 2,
        "trans_nheads": 2, "audio_feature_type": 1, "num_emotions": 6, "img_interval": 250,
        "hand_crafted": True, "text_max_len": 50, "datapath": "s3://data/shards", "dataset": "mosei",
        "modalities": "ta", "valid": True, "test": True, "ckpt": "ckpt/model.safetensors", "ckpt_mod": "t",
        "dropout": 0.2, "num_layers": 2, "hidden_size": 128, "bidirectional": True, "gru": True,
    }


def test_long_names_parse_like_short_names():
    short = parse("-bs 4 -lr 1e-4 -wd 0.01 -ep 3 -es 2 -cu 1 -cl 2.5 -sc -se 7 -mo mme2e -mod ta -dr 0.2 "
                  "-nl 2 -hs 128 -bi -hfcs 1 2 -aft 1")
    long = parse("--batch-size 4 --learning-rate 1e-4 --weight-decay 0.01 --epochs 3 --early-stop 2 --cuda 1 "
                 "--clip 2.5 --scheduler --seed 7 --model mme2e --modalities ta --dropout 0.2 --num-layers 2 "
                 "--hidden-size 128 --bidirectional --hfc-sizes 1 2 --audio-feature-type 1")
    assert vars(short) == vars(long)


def test_every_supported_flag_maps_onto_the_config():
    req = request(EVERY_FLAG, cuda_available=True)
    assert req.overrides == (
        "train.batch_size=4", "train.lr=0.0001", "train.weight_decay=0.01", "train.epochs=3",
        "train.early_stop=2", "train.clip=2.5", "train.seed=7", "train.text_lr_factor=5.0",
        "model.trans_dim=32", "model.trans_nlayers=2", "model.trans_nheads=2", "model.text_max_len=50",
        "model.dropout=0.2", "data.datapath=s3://data/shards", "decode.img_interval_ms=250",
        "train.scheduler=true", "train.loss=ce", "train.optim=sgd", "model.text_model=albert-large-v2",
        "model.fusion=mean", "model.modalities=ta", "data.dataset=mosei", "train.use_gpu=true",
    )
    assert (req.num_emotions, req.valid_only, req.test_only) == (6, True, True) and req.evaluate_only
    assert (req.ckpt, req.ckpt_mod) == ("ckpt/model.safetensors", "t")
    unused = [n for n in req.notes if "FV2ES does not use it" in n]
    assert [n.split(":")[0] for n in unused] == [
        "--feature-dim=128", "--num-layers=2", "--hidden-size=128", "--bidirectional", "--gru"
    ]
    assert "--cuda=1: training on GPU; Ray Train assigns the devices" in req.notes
    cfg = load_config(CONFIGS / "paper.yaml", req.overrides)
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.weight_decay, cfg.train.clip) == (4, 1e-4, 0.01, 2.5)
    assert (cfg.train.scheduler, cfg.train.seed, cfg.train.optim, cfg.train.use_gpu) == (True, 7, "sgd", True)
    assert (cfg.model.fusion, cfg.model.dropout, cfg.model.modalities) == ("mean", 0.2, "ta")
    assert (cfg.data.dataset, cfg.data.datapath, cfg.decode.img_interval_ms) == ("mosei", "s3://data/shards", 250)


def test_flags_not_given_make_no_overrides():
    assert request("") == SeedRequest()
    assert request("-ep=5").overrides == ("train.epochs=5",)
    assert request("-ep=5").notes == ()
    assert request("--trans-nheads=8").overrides == ("model.trans_nheads=8",)


def test_cuda_without_a_device_trains_on_cpu():
    assert request("--cuda=0", cuda_available=False).overrides == ()
    assert request("--cuda=0", cuda_available=True).overrides == ("train.use_gpu=true",)


def test_seed_names_are_case_insensitive():
    req = request("--model=MME2E --dataset=IEMOCAP --loss=BCE --text-model-size=XLarge -mod=TAV --fusion=Late")
    assert req.overrides == ("train.loss=bce", "model.text_model=albert-xlarge-v2", "model.fusion=weighted",
                             "model.modalities=tav", "data.dataset=iemocap")


def test_seed_default_fusion_keeps_the_seed_behaviour():
    req = request("--fusion=early")
    assert req.overrides == ("model.fusion=weighted",)
    assert req.notes[0].startswith("--fusion=early: the seed's mme2e ignores it")


@pytest.mark.parametrize("path", ["123", "null", "data: x", "[a]", "./data dir/#1", "true"])
def test_string_values_reach_the_config_unchanged(path):
    overrides = request(f"--datapath={shlex.quote(path)}").overrides
    assert load_config(None, overrides).data.datapath == path


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("-mo mme2e_sparse", "--model=mme2e_sparse: not one of mme2e, lf_rnn, lf_transformer"),
        ("--hand-crafted", "--hand-crafted: hand-crafted features are not part of FV2ES end to end"),
        ("-hfcs 300 144 35", "--hfc-sizes: hand-crafted features are not part of FV2ES end to end"),
        ("-aft=0", "--audio-feature-type: hand-crafted features are not part of FV2ES end to end"),
        ("--fusion=concat", "--fusion=concat: not one of late, weighted, early, mean"),
        ("--dataset=meld", "--dataset=meld: not one of iemocap, mosei"),
        ("--loss=mse", "--loss=mse: not one of bce, ce"),
        ("--optim=adamw", "--optim=adamw: not one of adam, sgd"),
        ("--text-model-size=huge", "--text-model-size=huge: not one of base, large, xlarge"),
        ("-mod=tx", "--modalities=tx: must be a non-empty subset of 'tav'"),
        ("-mod=tt", "--modalities=tt: must be a non-empty subset of 'tav'"),
        ("--valid", "--valid: evaluates a checkpoint; give it with --ckpt"),
        ("--test", "--test: evaluates a checkpoint; give it with --ckpt"),
        ("--ckpt-mod=ta", "--ckpt-mod=ta: names branches to load from --ckpt; give --ckpt"),
        ("--ckpt=m.safetensors --ckpt-mod=tx", "--ckpt-mod=tx: must be a non-empty subset of 'tav'"),
        ("--num-emotions=0", "--num-emotions=0: must be > 0"),
    ],
)
def test_flags_fv2es_cannot_honour_are_refused(command, message):
    with pytest.raises(SeedFlagError, match="^" + re.escape(message)):
        request(command)


def test_seed_flag_error_is_a_value_error():
    assert issubclass(SeedFlagError, ValueError)


def test_request_checks_emotions_and_checkpoint_modalities():
    emotions = load_config(CONFIGS / "paper.yaml").model.emotions
    request("--num-emotions=6 --ckpt=m --ckpt-mod=ta").check(emotions, "tav")
    with pytest.raises(SeedFlagError, match=r"--num-emotions=4: the dataset has 6 emotions \(ang, exc"):
        request("--num-emotions=4").check(emotions, "tav")
    with pytest.raises(SeedFlagError, match="--ckpt-mod=ta: the model has only the modalities 't'"):
        request("--ckpt=m --ckpt-mod=ta").check(emotions, "t")


def test_checkpoint_alone_starts_training_from_it():
    req = request("--ckpt=runs/best.safetensors --ckpt-mod=AV")
    assert (req.ckpt, req.ckpt_mod, req.evaluate_only, req.overrides) == ("runs/best.safetensors", "av", False, ())


def test_cuda_asks_torch_by_default():
    import torch

    gpu = torch.cuda.is_available()
    req = seed_request(parse("-cu=0"))
    assert req.overrides == (("train.use_gpu=true",) if gpu else ())


def test_help_lists_the_seed_flags():
    text = seed_parser().format_help()
    assert "seed main.py flags" in text and "-lr LEARNING_RATE, --learning-rate LEARNING_RATE" in text


def one_clip_per_emotion_and_split(shards, out) -> str:
    """A copy of the shards with the first usable example of each (split, emotion): 18 rows."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fv2es.shards import ExampleShards

    table = ExampleShards(str(shards)).read(usable=True)
    first = {}
    for i, (split, labels) in enumerate(zip(table.column("split").to_pylist(), table.column("labels").to_pylist())):
        first.setdefault((split, tuple(labels)), i)
    small = table.take(pa.array(sorted(first.values())))
    (out / "examples").mkdir(parents=True)
    pq.write_table(small, str(out / "examples" / "part-00000.parquet"))
    meta = json.loads((shards / "metadata.json").read_text())
    meta["split_rows"] = {s: small.column("split").to_pylist().count(s) for s in ("train", "valid", "test")}
    (out / "metadata.json").write_text(json.dumps(meta))
    assert meta["split_rows"] == {"train": 6, "valid": 6, "test": 6}
    return str(out)


@pytest.mark.slow
def test_the_seed_readme_command_runs(demo_shards, tmp_path, capsys, monkeypatch):
    """The seed README's training command, with `fv2es train` for `python main.py` and --datapath at
    our shards. ALBERT is not shipped offline, so the packaged MiniLM stands in, and one epoch of
    the paper model on CPU proves the wiring (the full recipe is 30 epochs), on one clip of each
    emotion per split (the paper model's CPU time was most of this test's). The loop runs in this
    process (`fv2es train` under Ray Train is tests/train/test_train_job.py's)."""
    import json

    from fv2es.cli import main
    from fv2es.models import load_checkpoint
    from fv2es.train import job
    from fv2es.train.local import train_in_process

    monkeypatch.setattr(job, "run_train", train_in_process)
    ours = ["--datapath", one_clip_per_emotion_and_split(demo_shards / "shards", tmp_path / "shards"),
            "--output", str(tmp_path / "runs"), "--name", "seed",
            "model.text_model=minilm", "train.epochs=1"]
    assert main(["train", *readme_argv(), *ours]) == 0
    captured = capsys.readouterr()
    assert "training fv2es_paper (tav)" in captured.out and "best checkpoint:" in captured.out
    rows = [json.loads(line) for line in (tmp_path / "runs" / "seed" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    ckpt = load_checkpoint(str(tmp_path / "runs" / "seed" / "best.safetensors"))
    assert (ckpt.config.trans_dim, ckpt.config.trans_nlayers, ckpt.config.text_max_len) == (64, 4, 100)
    assert ckpt.config.audio_depths == (2, 2, 20)
