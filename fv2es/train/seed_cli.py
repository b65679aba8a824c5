"""The seed's ``main.py`` flags, accepted by ``fv2es train`` and mapped onto config overrides.

The seed README trains with::

    python main.py -lr=4.5e-6 -ep=30 -mod=tav -bs=2 --img-interval=500 --early-stop=6 --loss=bce \\
        --cuda=0 --model=mme2e --num-emotions=6 --trans-dim=64 --trans-nlayers=4 --trans-nheads=4 \\
        --text-lr-factor=10 --text-model-size=base --text-max-len=100

and the same line runs with ``fv2es train`` in place of ``python main.py``. :func:`add_seed_arguments`
registers every seed option under its seed names (short and long, so ``-lr=4.5e-6`` parses) with
default ``None`` (``False`` for switches): only the flags a user gives become overrides, and the
config file supplies everything else, so unlike the seed no flag is required. :func:`seed_request`
turns the parsed flags into a :class:`SeedRequest`: ``KEY=VALUE`` override strings for
:func:`fv2es.config.load_config`, notes to print, and the flags that are not configuration
(``--num-emotions``, ``--valid``, ``--test``, ``--ckpt``, ``--ckpt-mod``).

``--model`` chooses among the seed's three networks: ``mme2e`` (FV2ES) and its late-fusion
baselines on hand-crafted features, ``lf_rnn`` and ``lf_transformer`` (:mod:`fv2es.models.baselines`;
presets of the same names). A baseline takes ``--hand-crafted`` (implied), ``-hfcs`` and
``--trans-nlayers``; the seed builds ``LF_RNN(args)``, which never reads ``-nl``, ``-hs``, ``-bi``,
``--gru`` or ``-dr``, so those are accepted with a note and the network stays the seed's (the
``model.num_layers`` / ``hidden_size`` / ``bidirectional`` / ``gru`` keys change it). ``-aft``
selects the audio columns of MESM's IEMOCAP feature files, which :mod:`fv2es.data.hcf` reads; shards
already hold their features, so in training it is checked and noted. Flags that ask for what the
chosen network cannot do (hand-crafted features into FV2ES) raise :class:`SeedFlagError`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import yaml

from fv2es.errors import UserError

MODALITIES = "tav"
SEED_MODEL = "mme2e"  # the seed's name for the FV2ES network
# The seed's --model names -> our presets (each preset's arch is the network).
SEED_MODELS = {"mme2e": None, "lf_rnn": "lf_rnn", "lf_transformer": "lf_transformer"}
SEED_AUDIO_FEATURE_TYPES = range(7)  # the seed's -aft values (fv2es.data.hcf.AUDIO_FEATURE_TYPES)
SEED_DATASETS = ("iemocap", "mosei")
SEED_LOSSES = ("bce", "ce")
SEED_OPTIMS = ("adam", "sgd")
# The seed's --fusion values and what they mean for the FV2ES network. The seed's mme2e ignores
# --fusion (its default, "early", included) and always fuses late by a learned weighted sum, so
# "early" keeps the seed's behaviour rather than failing a command that ran there.
SEED_FUSIONS = {"late": "weighted", "weighted": "weighted", "early": "weighted", "mean": "mean"}

# (option strings, argparse keywords), in the seed's order. ``dest`` is the seed's own key.
SEED_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    # Training hyper-parameters
    (("-bs", "--batch-size"), {"type": int, "help": "batch size (train.batch_size)"}),
    (("-lr", "--learning-rate"), {"type": float, "help": "learning rate (train.lr)"}),
    (("-wd", "--weight-decay"), {"type": float, "help": "weight decay (train.weight_decay)"}),
    (("-ep", "--epochs"), {"type": int, "help": "number of epochs (train.epochs)"}),
    (("-es", "--early-stop"), {"type": int, "help": "early stop patience in epochs (train.early_stop)"}),
    (("-cu", "--cuda"), {"type": str, "help": "CUDA device number: train on GPU when one is available "
                                              "(train.use_gpu); Ray assigns the devices"}),
    (("-cl", "--clip"), {"type": float, "help": "gradient-norm clipping, <= 0 disables (train.clip)"}),
    (("-sc", "--scheduler"), {"action": "store_true", "help": "use the lr scheduler (train.scheduler)"}),
    (("-se", "--seed"), {"type": int, "help": "random seed (train.seed)"}),
    (("--loss",), {"type": str, "help": "loss function: bce/ce (train.loss)"}),
    (("--optim",), {"type": str, "help": "optimizer: adam/sgd (train.optim)"}),
    (("--text-lr-factor",), {"type": float, "help": "text-branch lr = lr / this (train.text_lr_factor)"}),
    # Model
    (("-mo", "--model"), {"type": str, "help": "which model: mme2e (FV2ES), lf_rnn or lf_transformer "
                                               "(model.preset)"}),
    (("--text-model-size",), {"type": str, "help": "ALBERT v2 size: base/large/xlarge (model.text_model)"}),
    (("--fusion",), {"type": str, "help": "late fusion of the modalities: late/weighted or mean (model.fusion)"}),
    (("--feature-dim",), {"type": int, "help": "feature size of the seed's other models (not used by FV2ES)"}),
    (("-hfcs", "--hfc-sizes"), {"type": int, "nargs": "+", "help": "hand-crafted feature sizes text audio visual "
                                                               "(model.hfc_sizes; baselines)"}),
    (("--trans-dim",), {"type": int, "help": "width of the temporal transformers (model.trans_dim)"}),
    (("--trans-nlayers",), {"type": int, "help": "layers of the temporal transformers (model.trans_nlayers)"}),
    (("--trans-nheads",), {"type": int, "help": "heads of the temporal transformers (model.trans_nheads)"}),
    (("-aft", "--audio-feature-type"), {"type": int, "help": "MESM audio column set 0-6 "
                                                                      "(fv2es.data.hcf; baselines)"}),
    # Data
    (("--num-emotions",), {"type": int, "help": "number of emotions: checked against the dataset's classes"}),
    (("--img-interval",), {"type": int, "help": "ms between sampled frames (decode.img_interval_ms; "
                                                "preprocessing only)"}),
    (("--hand-crafted",), {"action": "store_true", "help": "hand-crafted features (implied by "
                                                                   "--model lf_rnn/lf_transformer)"}),
    (("--text-max-len",), {"type": int, "help": "max tokens of a transcript (model.text_max_len)"}),
    # Path
    (("--datapath",), {"type": str, "help": "URI of the data (data.datapath)"}),
    (("--dataset",), {"type": str, "help": "dataset: iemocap/mosei (data.dataset)"}),
    # Evaluation
    (("-mod", "--modalities"), {"type": str, "help": "modalities, a subset of tav (model.modalities)"}),
    (("--valid",), {"action": "store_true", "help": "only evaluate --ckpt on the validation split"}),
    (("--test",), {"action": "store_true", "help": "only evaluate --ckpt on the test split"}),
    # Checkpoint
    (("--ckpt",), {"type": str, "help": "checkpoint to start from (or to evaluate with --valid/--test)"}),
    (("--ckpt-mod",), {"type": str, "help": "which modality branches (subset of tav) to load from --ckpt"}),
    # The seed's LSTM baselines
    (("-dr", "--dropout"), {"type": float, "help": "dropout of the temporal transformers (model.dropout)"}),
    (("-nl", "--num-layers"), {"type": int, "help": "LSTM layers: never read by the seed (model.num_layers)"}),
    (("-hs", "--hidden-size"), {"type": int, "help": "LSTM width: never read by the seed (model.hidden_size)"}),
    (("-bi", "--bidirectional"), {"action": "store_true", "help": "Bi-LSTM: never read by the seed (model.bidirectional)"}),
    (("--gru",), {"action": "store_true", "help": "GRU: never read by the seed (model.gru)"}),
)

# flag -> config key, for the flags that are plain values
_DIRECT = {
    "batch_size": "train.batch_size",
    "learning_rate": "train.lr",
    "weight_decay": "train.weight_decay",
    "epochs": "train.epochs",
    "early_stop": "train.early_stop",
    "clip": "train.clip",
    "seed": "train.seed",
    "text_lr_factor": "train.text_lr_factor",
    "trans_dim": "model.trans_dim",
    "trans_nlayers": "model.trans_nlayers",
    "trans_nheads": "model.trans_nheads",
    "text_max_len": "model.text_max_len",
    "dropout": "model.dropout",
    "datapath": "data.datapath",
    "img_interval": "decode.img_interval_ms",
}
# Options the seed parses and its networks never read (its LF_RNN(args) takes its defaults).
_UNUSED = ("feature_dim", "num_layers", "hidden_size", "bidirectional", "gru")
_HAND_CRAFTED = ("hand_crafted", "hfc_sizes", "audio_feature_type")
# FV2ES options the seed's baselines do not read (LF_Transformer fixes heads 4/2/5 and torch's
# default dropout; LF_RNN reads only -hfcs); given with a baseline they change nothing.
_FV2ES_ONLY = ("trans_dim", "trans_nheads", "dropout")


class SeedFlagError(UserError, ValueError):
    """A seed flag that FV2ES cannot honour; the message names the flag."""


@dataclass(frozen=True)
class SeedRequest:
    """What a seed command line asks for.

    ``overrides`` are ``KEY=VALUE`` strings for :func:`fv2es.config.load_config`, applied after the
    config file (and before the user's own ``KEY=VALUE`` overrides, so those win). ``notes`` are
    lines for the user about flags that were accepted but change nothing or less than in the seed.
    The rest are not configuration: ``num_emotions`` (``--num-emotions``, ``None`` if not given) is
    checked against the dataset's classes by :meth:`check`; ``valid_only``/``test_only`` ask to
    evaluate ``ckpt`` on that split instead of training (both may be set); ``ckpt`` alone starts
    training from that checkpoint; ``ckpt_mod`` names the modality branches to load from it
    (``None``: every branch it holds).
    """

    overrides: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    num_emotions: int | None = None
    valid_only: bool = False
    test_only: bool = False
    ckpt: str | None = None
    ckpt_mod: str | None = None

    @property
    def evaluate_only(self) -> bool:
        """True when the command evaluates a checkpoint instead of training."""
        return self.valid_only or self.test_only

    def check(self, emotions: tuple[str, ...] | list[str], modalities: str) -> None:
        """Check the request against the loaded config's ``model.emotions`` and ``model.modalities``."""
        if self.num_emotions is not None and self.num_emotions != len(emotions):
            raise SeedFlagError(
                f"--num-emotions={self.num_emotions}: the dataset has {len(emotions)} emotions "
                f"({', '.join(emotions)})"
            )
        if self.ckpt_mod is not None and set(self.ckpt_mod) - set(modalities):
            raise SeedFlagError(
                f"--ckpt-mod={self.ckpt_mod}: the model has only the modalities {modalities!r}"
            )


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    """Register every flag of the seed's ``main.py`` (its names; nothing required, nothing defaulted)."""
    group = parser.add_argument_group(
        "seed main.py flags",
        "the seed's flags; each one given becomes a config override, applied after --config",
    )
    for flags, kwargs in SEED_OPTIONS:
        default = False if kwargs.get("action") == "store_true" else None
        group.add_argument(*flags, default=default, **kwargs)


def seed_request(args: argparse.Namespace, cuda_available: bool | None = None) -> SeedRequest:
    """Map the seed flags given in ``args`` onto a :class:`SeedRequest`.

    ``cuda_available`` (default: ask torch) decides what ``--cuda`` does: train on GPU, or a note
    that there is none. Raises :class:`SeedFlagError` for a flag FV2ES cannot honour.
    """
    given = {dest: value for dest, value in vars(args).items()
             if dest in _SEED_DESTS and value is not None and value is not False}
    overrides: list[str] = []
    notes: list[str] = []

    model = _choose("model", given["model"], tuple(SEED_MODELS)) if "model" in given else SEED_MODEL
    baseline = SEED_MODELS[model]
    if baseline is None:
        for dest in _HAND_CRAFTED:
            if dest in given:
                raise SeedFlagError(f"{_flag(dest)}: hand-crafted features are not part of FV2ES end to end; "
                                    "they feed the seed's baselines: give --model lf_rnn or lf_transformer")
    else:
        overrides.append(f"model.preset={baseline}")
        overrides.extend(_hand_crafted(given, notes))

    for dest, key in _DIRECT.items():
        if dest in given:
            if baseline and dest in _FV2ES_ONLY:
                notes.append(f"{_flag(dest)}={_scalar(given[dest])}: the seed's {baseline} does not read it; "
                             "nothing changes")
                continue
            overrides.append(f"{key}={_scalar(given[dest])}")
    if "img_interval" in given:
        notes.append(f"{_flag('img_interval')}={given['img_interval']}: sets decode.img_interval_ms, which only "
                     "affects preprocessing; shards already hold sampled frames")
    if given.get("scheduler"):
        overrides.append("train.scheduler=true")
    if "loss" in given:
        overrides.append(f"train.loss={_choose('loss', given['loss'], SEED_LOSSES)}")
    if "optim" in given:
        overrides.append(f"train.optim={_choose('optim', given['optim'], SEED_OPTIMS)}")
    if "text_model_size" in given and baseline:
        notes.append(f"{_flag('text_model_size')}={given['text_model_size']}: the seed's {baseline} does not read "
                     "it; its text vectors come from MiniLM")
    elif "text_model_size" in given:
        from fv2es.models.text import ALBERT_SIZES  # imports torch: only when the flag is given

        size = _choose("text_model_size", given["text_model_size"], tuple(ALBERT_SIZES))
        overrides.append(f"model.text_model={ALBERT_SIZES[size]}")
    if "fusion" in given:
        fusion = _choose("fusion", given["fusion"], tuple(SEED_FUSIONS))
        overrides.append(f"model.fusion={SEED_FUSIONS[fusion]}")
        if fusion == "early":
            notes.append(f"{_flag('fusion')}=early: the seed's mme2e ignores it and fuses late by a learned "
                         "weighted sum; so does FV2ES (model.fusion=weighted)")
    if "modalities" in given:
        overrides.append(f"model.modalities={_modalities('modalities', given['modalities'])}")
    if "dataset" in given:
        overrides.append(f"data.dataset={_choose('dataset', given['dataset'], SEED_DATASETS)}")
    if "cuda" in given:
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        if cuda_available:
            overrides.append("train.use_gpu=true")
            notes.append(f"{_flag('cuda')}={given['cuda']}: training on GPU; Ray Train assigns the devices")
        else:
            notes.append(f"{_flag('cuda')}={given['cuda']}: no CUDA device: training on CPU")
    for dest in _UNUSED:
        if dest in given:
            shown = _flag(dest) if given[dest] is True else f"{_flag(dest)}={_scalar(given[dest])}"
            if baseline and dest != "feature_dim":
                notes.append(f"{shown}: the seed parses it but builds LF_RNN(args) with its defaults (one "
                             f"bidirectional LSTM layer of the feature width); so does fv2es "
                             f"(model.{dest} changes it)")
            else:
                notes.append(f"{shown}: an option of the seed's other models; FV2ES does not use it")

    num_emotions = given.get("num_emotions")
    if num_emotions is not None and num_emotions <= 0:
        raise SeedFlagError(f"{_flag('num_emotions')}={num_emotions}: must be > 0")
    valid_only, test_only = bool(given.get("valid")), bool(given.get("test"))
    ckpt = given.get("ckpt")
    ckpt_mod = given.get("ckpt_mod")
    if (valid_only or test_only) and not ckpt:
        which = _flag("valid") if valid_only else _flag("test")
        raise SeedFlagError(f"{which}: evaluates a checkpoint; give it with --ckpt")
    if ckpt_mod is not None:
        if not ckpt:
            raise SeedFlagError(f"{_flag('ckpt_mod')}={ckpt_mod}: names branches to load from --ckpt; give --ckpt")
        ckpt_mod = _modalities("ckpt_mod", ckpt_mod)
    return SeedRequest(tuple(overrides), tuple(notes), num_emotions, valid_only, test_only, ckpt or None, ckpt_mod)


def _hand_crafted(given: dict, notes: list[str]) -> list[str]:
    """Overrides (and notes) of the hand-crafted-feature flags for a baseline."""
    overrides = []
    if "hfc_sizes" in given:
        sizes = given["hfc_sizes"]
        if len(sizes) != 3 or min(sizes) <= 0:
            raise SeedFlagError(f"{_flag('hfc_sizes')}={' '.join(map(str, sizes))}: give 3 sizes > 0 "
                                "(text audio visual)")
        overrides.append(f"model.hfc_sizes=[{','.join(str(int(v)) for v in sizes)}]")
    if "audio_feature_type" in given:
        aft = given["audio_feature_type"]
        if aft not in SEED_AUDIO_FEATURE_TYPES:
            raise SeedFlagError(f"{_flag('audio_feature_type')}={aft}: not one of 0-6")
        notes.append(f"{_flag('audio_feature_type')}={aft}: selects the audio columns of MESM's IEMOCAP feature "
                     f"files when they are imported (`fv2es preprocess --dataset iemocap-hcf -aft {aft}`); the shards "
                     "already hold their features")
    return overrides


_SEED_DESTS = {flags[-1].lstrip("-").replace("-", "_"): flags for flags, _ in SEED_OPTIONS}


def _flag(dest: str) -> str:
    return _SEED_DESTS[dest][-1]  # the long name


def _choose(dest: str, value: str, allowed: tuple[str, ...]) -> str:
    low = value.strip().lower()
    if low not in allowed:
        raise SeedFlagError(f"{_flag(dest)}={value}: not one of {', '.join(allowed)}")
    return low


def _modalities(dest: str, value: str) -> str:
    mods = value.strip().lower()
    if not mods or set(mods) - set(MODALITIES) or len(set(mods)) != len(mods):
        raise SeedFlagError(f"{_flag(dest)}={value}: must be a non-empty subset of {MODALITIES!r}")
    return mods


def _scalar(value: Any) -> str:
    """A value as override text that :func:`fv2es.config.parse_overrides` reads back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    try:
        plain = yaml.safe_load(text) == text
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML string
