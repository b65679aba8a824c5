"""Convert Resemblyzer's GE2E voice encoder to fv2es's packaged fp16 safetensors.

Reproduces ``fv2es/models/weights/ge2e_resemblyzer.{safetensors,json}`` (byte for byte) from the Apache-2.0
``resemblyzer`` wheel without installing it (its dependencies pull librosa, numba and webrtcvad)::

    pip download --no-deps resemblyzer==0.1.4 -d /tmp/rz
    python tools/convert_resemblyzer.py /tmp/rz/Resemblyzer-0.1.4-py3-none-any.whl

``pretrained.pt`` is read with ``torch.load(weights_only=True)``; its ``model_state`` holds the
LSTM and the linear layer (kept) and the GE2E loss's similarity scale and bias (training only,
dropped); the optimizer state is dropped. The tensors are stored in fp16: the embeddings of the
committed test voices keep a cosine above 0.9999 with the float32 ones (printed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

VERSION = "0.1.4"
WHEEL = f"Resemblyzer-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"
MEMBER = "resemblyzer/pretrained.pt"
MEMBER_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
LICENSE_MEMBER = f"Resemblyzer-{VERSION}.dist-info/LICENSE"
ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "fv2es" / "models" / "weights"
DROPPED = ("similarity_weight", "similarity_bias")  # the GE2E loss's learned scale and bias


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_wheel(path: Path) -> tuple[bytes, str]:
    """``pretrained.pt`` and the licence text, checked against the pinned hashes."""
    data = path.read_bytes()
    if sha256(data) != WHEEL_SHA256:
        sys.exit(f"{path}: not {WHEEL} (sha256 {sha256(data)})")
    with zipfile.ZipFile(io.BytesIO(data)) as whl:
        model, licence = whl.read(MEMBER), whl.read(LICENSE_MEMBER).decode()
    if sha256(model) != MEMBER_SHA256 or "Apache License" not in licence:
        sys.exit(f"{path}: {MEMBER} or its licence is not what this script records")
    return model, licence


def convert(model: bytes) -> dict[str, torch.Tensor]:
    """The encoder's state dict in fp16, every kept key checked against fv2es's GE2E."""
    from fv2es.media.voices import GE2E

    state = torch.load(io.BytesIO(model), map_location="cpu", weights_only=True)["model_state"]
    kept = {k: v for k, v in state.items() if k not in DROPPED}
    expected = GE2E().state_dict()
    if set(kept) != set(expected) or any(kept[k].shape != expected[k].shape for k in kept):
        sys.exit(f"keys or shapes differ: {sorted(set(kept) ^ set(expected))}")
    return {k: v.to(torch.float16).contiguous() for k, v in kept.items()}


def fp16_check(model: bytes, half: dict[str, torch.Tensor]) -> float:
    """The smallest cosine between fp32 and fp16 weights' embeddings of the committed test voices."""
    import wave

    from fv2es.media.voices import GE2E, VoiceEncoder

    full = GE2E().eval()
    state = torch.load(io.BytesIO(model), map_location="cpu", weights_only=True)["model_state"]
    full.load_state_dict({k: v for k, v in state.items() if k not in DROPPED})
    enc = VoiceEncoder()
    enc.net.load_state_dict({k: v.float() for k, v in half.items()})
    worst = 1.0
    for wav_path in sorted((ROOT / "tests" / "pipeline" / "data" / "voices").glob("*.wav")):
        with wave.open(str(wav_path)) as w:
            wav = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        a = enc.embed_utterance(wav)
        enc.net, keep = full, enc.net
        b = enc.embed_utterance(wav)
        enc.net = keep
        worst = min(worst, float(a @ b))
    return worst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help=f"{WHEEL} (pip download --no-deps resemblyzer=={VERSION})")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    from safetensors.torch import save

    model, licence = read_wheel(args.wheel)
    half = convert(model)
    data = save(half, metadata={"source": f"resemblyzer=={VERSION}:{MEMBER}", "dtype": "float16"})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ge2e_resemblyzer.safetensors").write_bytes(data)
    worst = fp16_check(model, half)
    provenance = {
        "model": "GE2E voice encoder (Wan, Wang, Papir, Lopez Moreno 2018, arXiv:1710.10467), Resemblyzer's",
        "trained_on": "not stated in the package; the Real-Time-Voice-Cloning project it comes from (and whose "
                      "encoders it says are interchangeable) trained on LibriSpeech train-other-500, VoxCeleb1 "
                      "and VoxCeleb2 (that project's wiki)",
        "source": {"package": "resemblyzer", "version": VERSION, "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                   "file": MEMBER, "sha256": MEMBER_SHA256},
        "converted": {"file": "ge2e_resemblyzer.safetensors", "sha256": sha256(data), "bytes": len(data),
                      "format": "safetensors", "dtype": "float16", "tool": "tools/convert_resemblyzer.py",
                      "tensors": len(half), "parameters": int(sum(v.numel() for v in half.values())),
                      "dropped": list(DROPPED), "fp16_min_cosine_test_voices": round(worst, 6)},
        "license": {"name": "Apache-2.0", "text": licence},
        "input": "16 kHz mono; power mel spectrogram, 40 Slaney bands (area-normalised), n_fft 400 (Hann), "
                 "hop 160, centred with zero padding; windows of 160 frames",
        "output": "256-d, non-negative, L2-normalised; compare two by their cosine",
    }
    (args.out / "ge2e_resemblyzer.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {len(data)} bytes, {provenance['converted']['parameters']} parameters; "
          f"fp16 vs fp32 embeddings of the test voices: min cosine {worst:.6f}")


if __name__ == "__main__":
    main()
