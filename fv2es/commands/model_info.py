"""``fv2es model``: build a model from a config, count its parameters, time a forward pass on
a generated utterance of a given length (CPU or GPU).

Any preset works: FV2ES (``model.preset=fv2es_tiny``, the default without ``--config``;
``fv2es_paper``) takes faces, spectrogram pieces and a transcript; the seed's baselines
(``model.preset=lf_rnn`` / ``lf_transformer``) take the hand-crafted feature sequences
preprocessing writes (:mod:`fv2es.models.handcrafted`), as many steps of ``model.hfc_sizes``
widths as a real utterance of that length has.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from fv2es.commands.common import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es model``."""
    add_config_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10.0, help="utterance length to time [10]")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes (the median is shown) [3]")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 [cpu]")
    parser.add_argument("--training-form", action="store_true",
                        help="time the multi-branch training form instead of the folded inference form")
    parser.add_argument("--save-checkpoint", metavar="URI", default=None,
                        help="also save the (untrained, freshly initialised) model as a checkpoint here")


# Parts counted per sub-module: FV2ES's audio / visual stages, a baseline's per-modality encoders and heads.
_PER_SUBMODULE = ("audio", "visual", "rnns", "transformers", "affines")


def parameter_counts(model) -> dict[str, int]:
    """Parameters per top-level part of a model (FV2ES: ``text``, ``audio.nest``, ...; a baseline:
    ``rnns.t`` / ``transformers.t``, ``affines.t``, ..., ``weighted_fusion``), then the total and
    the trainable ones (a baseline freezes the modalities it does not use)."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] in _PER_SUBMODULE else parts[0]
        counts[key] = counts.get(key, 0) + p.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts


def example_utterance(seconds: float, img_interval_ms: int, text: str, seed: int = 0,
                      spectrogram=None) -> dict:
    """A generated utterance with the frame and piece counts a real one of that length has.

    Shapes are the model's input geometry (:mod:`fv2es.models.geometry`); the piece count is the
    spectrogram stage's own (``spectrogram``: a SpectrogramConfig, default the paper's).
    """
    from fv2es.media.spectrogram import num_pieces
    from fv2es.models.geometry import FACE_SHAPE, PIECE_SHAPE

    rng = np.random.default_rng(seed)
    frames = max(1, math.floor(seconds * 1000 / img_interval_ms))
    pieces = num_pieces(seconds, spectrogram)
    return {
        "text": text,
        "faces": rng.integers(0, 256, (frames, *FACE_SHAPE), dtype=np.uint8),
        "pieces": rng.random((pieces, *PIECE_SHAPE), dtype=np.float32),
    }


def example_features(seconds: float, config, img_interval_ms: int, text: str, spectrogram=None,
                     seed: int = 0) -> dict:
    """A generated utterance for a baseline: hand-crafted feature sequences (``hcf_text``,
    ``hcf_audio``, ``hcf_visual``) of widths ``config.hfc_sizes`` and of the lengths preprocessing
    gives an utterance of ``seconds`` with transcript ``text``: a vector per word piece of
    ``config.text_model``'s tokenizer (at most ``text_max_len``), per 12.5 ms spectrogram frame,
    per sampled face frame (:mod:`fv2es.models.handcrafted`). Values are standard normal."""
    from fv2es.media.spectrogram import SpectrogramConfig, num_frames
    from fv2es.models.text import load_tokenizer

    spectrogram = spectrogram or SpectrogramConfig()
    rng = np.random.default_rng(seed)
    words = len(load_tokenizer(config.text_model)(text, add_special_tokens=False)["input_ids"])
    lengths = (min(words, config.text_max_len), num_frames(round(seconds * spectrogram.sample_rate), spectrogram),
               max(1, math.floor(seconds * 1000 / img_interval_ms)))
    return {key: rng.standard_normal((n, width), dtype=np.float32)
            for key, n, width in zip(("hcf_text", "hcf_audio", "hcf_visual"), lengths, config.hfc_sizes)}


def _describe(cfg, sample: dict) -> tuple[str, str, str]:
    """The lines on the model, its inputs and the generated utterance."""
    m = cfg.model
    if m.hand_crafted:
        sizes = " ".join(map(str, m.hfc_sizes))
        steps = ", ".join(f"{len(sample[k])} {what}" for k, what in
                          (("hcf_text", "word pieces"), ("hcf_audio", "audio frames"), ("hcf_visual", "face frames")))
        return (f"model {m.preset} (the seed's {m.arch} baseline; modalities {m.modalities})",
                f"inputs: hand-crafted feature sequences, widths {sizes} (text audio visual; -hfcs)", steps)
    return (f"model {m.preset} (modalities {m.modalities}, text {m.text_model!r}; "
            f"branches text={m.text_arch} audio={m.audio_arch} visual={m.visual_arch})",
            f"inputs: faces {m.face_size}x{m.face_size} RGB, spectrogram pieces "
            f"{'x'.join(map(str, m.piece_shape))} (bands x mel bins x frames) at {cfg.spectrogram.sample_rate} Hz",
            f"{len(sample['faces'])} face frames, {len(sample['pieces'])} spectrogram pieces")


def run(args: argparse.Namespace) -> int:
    """Build the configured model, print its parameter counts and time a forward pass; returns 0."""
    from fv2es.models import create_model
    from fv2es.models.handcrafted import model_collate

    if args.config is None:  # no file: the tiny preset, so the command works from any folder
        args.overrides = ["model.preset=fv2es_tiny", *args.overrides]
    cfg = config_from_args(args)
    torch.manual_seed(cfg.train.seed)
    model = create_model(cfg.model).eval()
    if args.save_checkpoint:
        from fv2es.models import save_checkpoint

        model_id = save_checkpoint(args.save_checkpoint, model, extra={"loss": cfg.train.loss, "trained": False})
        print(f"saved untrained checkpoint {model_id} to {args.save_checkpoint}")
    if not args.training_form:
        model.reparameterize()
    model.to(args.device)
    text = "I can't believe you did that, I am so happy for you."
    if cfg.model.hand_crafted:
        sample = example_features(args.seconds, cfg.model, cfg.decode.img_interval_ms, text, cfg.spectrogram)
    else:
        sample = example_utterance(args.seconds, cfg.decode.img_interval_ms, text, spectrogram=cfg.spectrogram)
    model_line, inputs_line, steps = _describe(cfg, sample)
    print(model_line)
    print(inputs_line)
    for name, n in parameter_counts(model).items():
        print(f"  {name:<24} {n:>13,d}")
    batch = model_collate(cfg.model)([sample]).to(args.device)
    print(f"utterance: {args.seconds:g} s -> {steps} ({'training' if args.training_form else 'inference'} form, "
          f"{args.device}, {torch.get_num_threads()} threads)")
    times = []
    with torch.inference_mode():
        model(batch)  # warm-up: first-call allocations and kernel selection
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            logits = model(batch)
            if logits.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    probs = torch.sigmoid(logits.float())[0].tolist()
    print(f"forward: median {np.median(times) * 1000:.1f} ms over {len(times)} runs "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")
    print("probabilities: " + ", ".join(f"{e}={p:.3f}" for e, p in zip(cfg.model.emotions, probs)))
    return 0
