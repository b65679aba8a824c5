"""Forward-pass benchmark of the FV2ES model on one generated utterance.

Prints the median time of each part and ratios measured in this same run:
  - the visual branch in training (multi-branch RepVGG) vs inference (folded) form;
  - the whole model, training vs inference form;
  - the paper's text encoder (ALBERT-base architecture, random weights: nothing is downloaded)
    vs the packaged MiniLM, on the same transcript.

    python benchmarks/forward.py --config configs/paper.yaml --seconds 10
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from fv2es.commands.model_info import example_utterance
from fv2es.config import load_config
from fv2es.models import Collate, create_model

TEXT = "I can't believe you did that, I am so happy for you."


def median_ms(fn, repeats: int) -> float:
    with torch.inference_mode():
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def albert_base_ms(batch, repeats: int) -> float:
    from transformers import AlbertModel

    from fv2es.models.seed import text_encoder_config
    from fv2es.models.text import hf_config_from_dict

    # albert-base-v2's published architecture (known offline); random weights time the same as trained ones.
    cfg = hf_config_from_dict(text_encoder_config("albert-base-v2"))
    albert = AlbertModel(cfg).eval()
    ids = batch.text_ids.clamp(max=cfg.vocab_size - 1)
    return median_ms(lambda: albert(input_ids=ids, attention_mask=batch.text_mask), repeats)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/paper.yaml")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    cfg = load_config(args.config, ["model.text_model=minilm"])
    torch.manual_seed(0)
    train_form = create_model(cfg.model).eval()
    folded = copy.deepcopy(train_form).reparameterize()
    sample = example_utterance(args.seconds, cfg.decode.img_interval_ms, TEXT, spectrogram=cfg.spectrogram)
    batch = Collate(cfg.model.text_model, cfg.model.text_max_len)([sample])
    print(f"{cfg.model.preset}: {args.seconds:g} s utterance = {len(sample['faces'])} frames, "
          f"{len(sample['pieces'])} pieces; {torch.get_num_threads()} CPU threads; median of {args.repeats}")

    rows = {
        "text (MiniLM, packaged)": median_ms(lambda: train_form.text(batch.text_ids, batch.text_mask), args.repeats),
        "text (ALBERT-base arch)": albert_base_ms(batch, args.repeats),
        "audio (NesT + temporal)": median_ms(
            lambda: train_form.audio_temporal(train_form.audio(batch.pieces), batch.piece_lens), args.repeats),
        "visual, training form": median_ms(
            lambda: train_form.visual_temporal(train_form.visual(batch.faces), batch.face_lens), args.repeats),
        "visual, folded": median_ms(
            lambda: folded.visual_temporal(folded.visual(batch.faces), batch.face_lens), args.repeats),
        "model, training form": median_ms(lambda: train_form(batch), args.repeats),
        "model, folded": median_ms(lambda: folded(batch), args.repeats),
    }
    for name, ms in rows.items():
        print(f"  {name:<26} {ms:9.1f} ms")
    paper = rows["model, folded"] - rows["text (MiniLM, packaged)"] + rows["text (ALBERT-base arch)"]
    print(f"  {'paper model (ALBERT), est.':<26} {paper:9.1f} ms")
    print(f"ratio visual training/folded: {rows['visual, training form'] / rows['visual, folded']:.2f}x")
    print(f"ratio model training/folded:  {rows['model, training form'] / rows['model, folded']:.2f}x")
    print(f"ratio ALBERT-base/MiniLM text: {rows['text (ALBERT-base arch)'] / rows['text (MiniLM, packaged)']:.2f}x")


if __name__ == "__main__":
    main()
