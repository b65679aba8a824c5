"""Focused probes behind fv2es.compute's choices, on the paper model (MiniLM text, random weights).

    python benchmarks/probes.py precision            # bf16 autocast vs fp32: NesT-B audio branch
    python benchmarks/probes.py memory 64 0          # peak RSS growth of one forward: 64 pieces, 0 frames
    python benchmarks/probes.py train --threads 2    # training steps: utterances per second

Each prints CPU seconds (``time.process_time``) next to wall seconds: on a machine shared with
other work the wall figures stretch with the load, while the CPU time of a one-thread run does not
(much), so ``precision`` runs on one thread and compares CPU time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fv2es.commands.model_info import example_utterance
from fv2es.config import load_config
from fv2es.models import Collate, create_model


def paper():
    cfg = load_config("configs/paper.yaml", ["model.text_model=minilm"])
    torch.manual_seed(0)
    return cfg, create_model(cfg.model), Collate(cfg.model.text_model, cfg.model.text_max_len)


def peak_rss_mib() -> float:
    """This process's peak RSS so far (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024


def precision(args) -> None:
    torch.set_num_threads(1)
    _, model, _ = paper()
    model = model.eval().reparameterize()
    x = torch.randn(args.pieces, 4, 32, 32)
    print(f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.pieces} pieces, one thread")
    best, outputs = {}, {}
    for name in ("fp32", "bf16") * args.repeats:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
            model.audio(x[:1])  # warm-up
            cpu, wall = time.process_time(), time.perf_counter()
            outputs[name] = model.audio(x).float()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best[name] = min(best.get(name, cpu), cpu)
        print(f"{name}: {cpu * 1000 / args.pieces:.0f} ms CPU per piece (wall {wall * 1000 / args.pieces:.0f} ms)",
              flush=True)
    diff = (outputs["fp32"] - outputs["bf16"]).abs().max().item()
    print(f"bf16 speed / fp32 speed: {best['fp32'] / best['bf16']:.2f}x; largest feature difference {diff:.2g}")


def memory(args) -> None:
    torch.set_num_threads(1)
    _, model, collate = paper()
    model = model.eval().reparameterize()

    def batch(pieces, frames):
        return collate([{"text": "so happy", "faces": np.zeros((frames, 48, 48, 3), np.uint8),
                         "pieces": np.zeros((pieces, 4, 32, 32), np.float32)}])

    with torch.inference_mode():
        model(batch(1, 1))
        before = peak_rss_mib()
        model(batch(args.pieces, args.frames))
    print(f"{args.pieces} pieces, {args.frames} frames in one forward: peak RSS {before:.0f} -> "
          f"{peak_rss_mib():.0f} MiB (+{peak_rss_mib() - before:.0f})")


def train(args) -> None:
    torch.set_num_threads(args.threads)
    cfg, model, collate = paper()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    sample = example_utterance(args.seconds, cfg.decode.img_interval_ms, "I can't believe you did that.",
                               spectrogram=cfg.spectrogram)
    inputs = collate([sample] * args.batch)
    target = torch.zeros(args.batch, len(cfg.model.emotions))
    target[:, 0] = 1

    def step():
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(inputs), target).backward()
        optimizer.step()

    step()  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        step()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = args.batch * args.steps
    print(f"{args.threads} threads: {done / wall:.3f} utterances/s wall, {done / cpu:.3f} per CPU-second "
          f"(CPU/wall {cpu / wall:.2f}; {args.seconds:g} s utterances, batch {args.batch})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="probe", required=True)
    p = sub.add_parser("precision")
    p.add_argument("--pieces", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p = sub.add_parser("memory")
    p.add_argument("pieces", type=int)
    p.add_argument("frames", type=int)
    p = sub.add_parser("train")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    {"precision": precision, "memory": memory, "train": train}[args.probe](args)


if __name__ == "__main__":
    main()
