"""``fv2es model``: build a model from a config, count its parameters, time a forward pass on
a generated utterance of a given length (CPU or GPU)."""

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


def parameter_counts(model) -> dict[str, int]:
    """Parameters per top-level part of an FV2ES model, plus the total."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] in ("audio", "visual") else parts[0]
        counts[key] = counts.get(key, 0) + p.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
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


def run(args: argparse.Namespace) -> int:
    """Build the configured model, print its parameter counts and time a forward pass; returns 0."""
    from fv2es.models import Collate, create_model

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
    print(f"model {cfg.model.preset} (modalities {cfg.model.modalities}, text {cfg.model.text_model!r}; "
          f"branches text={cfg.model.text_arch} audio={cfg.model.audio_arch} visual={cfg.model.visual_arch})")
    print(f"inputs: faces {cfg.model.face_size}x{cfg.model.face_size} RGB, spectrogram pieces "
          f"{'x'.join(map(str, cfg.model.piece_shape))} (bands x mel bins x frames) at {cfg.spectrogram.sample_rate} Hz")
    for name, n in parameter_counts(model).items():
        print(f"  {name:<24} {n:>13,d}")

    sample = example_utterance(args.seconds, cfg.decode.img_interval_ms,
                               "I can't believe you did that, I am so happy for you.", spectrogram=cfg.spectrogram)
    batch = Collate(cfg.model.text_model, cfg.model.text_max_len)([sample]).to(args.device)
    print(f"utterance: {args.seconds:g} s -> {len(sample['faces'])} face frames, "
          f"{len(sample['pieces'])} spectrogram pieces ({'training' if args.training_form else 'inference'} form, "
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
