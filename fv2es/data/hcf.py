"""The hand-crafted feature files of MESM's processed release, as the seed's baselines read them.

Layouts under a data folder (the seed's ``--datapath``)::

    IEMOCAP_HCF_FEATURES/{phase}_text_features.pt    {utt_id: word vectors (L, 300)}
    IEMOCAP_HCF_FEATURES/{phase}_audio_features.pt   {utt_id: {"L": (D, T), "R": (D, T)}} per channel
    IEMOCAP_HCF_FEATURES/{phase}_video_features.pt   {utt_id: {"image_L_0": (K,), "image_R_0": ...}}
    MOSEI_HCF_FEATURES/mosei_senti_hcf_{phase}.pkl   {"id": (N,), "text": [(L, 300)], "audio": [(L, 74)],
                                                      "vision": [(L, 35)]}

``phase`` is ``train``, ``valid`` or ``test``. The seed writes and reads all of them with
``pickle`` (its ``src.utils.load``), ``.pt`` names included. Nothing here executes code from a
file: a ``torch.save`` zip goes through ``torch.load(weights_only=True)`` (numpy arrays allowed),
a plain pickle through an unpickler that builds only builtins and numpy arrays and refuses any
other global with :class:`HCFFormatError` naming it.

What the seed keeps of each utterance (``V2EM/src/datasets.py``), and so do we:

- IEMOCAP text: the word vectors as they are (an empty list: no words).
- IEMOCAP audio: the speaker's channel (``L`` when the session letter equals the speaker letter,
  :func:`fv2es.data.iemocap.speaker_side`), transposed to frames x descriptors, then the columns
  of ``-aft`` (:data:`AUDIO_FEATURE_TYPES`; type 0, 144 columns, is the default of ``-hfcs``).
- IEMOCAP visual: the speaker's frames ``image_{L|R}_0, 1, ...`` (up to half the entries, a
  missing index skipped), each vector's last 35 values (the facial action units).
- CMU-MOSEI: the three sequences of the utterance as they are (``-aft`` does not apply).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import posixpath
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from fv2es.data.iemocap import speaker_side
from fv2es.errors import InputError

PHASES = ("train", "valid", "test")
IEMOCAP_FOLDER = "IEMOCAP_HCF_FEATURES"
MOSEI_FOLDER = "MOSEI_HCF_FEATURES"
TEXT_WIDTH = 300  # GloVe word vectors
VISUAL_AU_COLUMNS = 35  # the seed keeps the last 35 visual values: the facial action units


def _r(start: int, stop: int) -> list[int]:
    return list(range(start, stop))


# The seed's audio column sets (HCFDataLoader.FEATURE_TYPE_DICT), by -aft value. Of MESM's
# per-frame descriptors, 0..33 and 655..762 are the sets the seed names; type 0 repeats columns
# 100 and 101 at its end ("2 empty features are added to make it 144, easy to be divided by #heads").
_PHONOLOGICAL = _r(655, 763)
AUDIO_FEATURE_TYPES: dict[int, tuple[int, ...]] = {
    0: tuple(_r(0, 34) + _PHONOLOGICAL + [100, 101]),  # all (144)
    1: tuple(_r(22, 34) + _PHONOLOGICAL),  # no BBE (120)
    2: tuple(_r(0, 22) + _PHONOLOGICAL),  # no MFCC (130)
    3: tuple(_r(0, 34)),  # no phonological (34)
    4: tuple(_r(0, 34) + [c for k in range(655, 763, 6) for c in (k, k + 1)]),  # mean and std (70)
    5: tuple(_r(0, 34) + [c for k in range(655, 763, 6) for c in (k, k + 1, k + 2, k + 3)]),  # no min/max (106)
    6: tuple(_r(0, 34) + _r(58, 104) + _r(116, 122) + _r(180, 214) + _r(238, 244) + _r(360, 366)
             + _r(424, 458) + _r(482, 488) + _r(552, 560) + _r(562, 566) + _r(568, 582) + _PHONOLOGICAL),  # plus
}

# What a plain pickle may build: numpy arrays and scalars (under numpy 1's and numpy 2's module
# names) and containers; everything else (code, torch storages that re-enter torch.load) is refused.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: np.core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: np.core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): lambda: np.core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): lambda: np.core.multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): lambda: np.core.numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): lambda: np.core.numeric._frombuffer,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "bytearray"): lambda: bytearray,
    ("builtins", "complex"): lambda: complex,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,  # how protocol-2 pickles store bytes
}


class HCFFormatError(InputError):
    """A hand-crafted feature file that is missing, not in MESM's layout, or needs code to load."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        # Python 2 names (protocol 0-2 pickles say __builtin__.set), mapped as pickle's own find_class
        # does; the mappings' keys are Python 2 names only.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        make = _ALLOWED_GLOBALS.get((module, name))
        if make is None:
            raise HCFFormatError(f"{self.where}: the pickle needs {module}.{name}, which is not a numpy array "
                                 "or a builtin; refused (hand-crafted feature files hold arrays only)")
        with np.testing.suppress_warnings() as sup:
            sup.filter(DeprecationWarning)  # numpy 2 warns on the numpy.core alias
            return make()

    def persistent_load(self, pid):
        raise HCFFormatError(f"{self.where}: the pickle refers to external objects ({pid!r}); refused")


def load_feature_file(uri: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """The object a feature file holds, built without executing code from it (see the module doc)."""
    try:
        with fsspec.open(uri, "rb", **dict(storage_options or {})) as f:
            data = f.read()
    except FileNotFoundError:
        raise HCFFormatError(f"{uri}: not found (MESM's hand-crafted features; see fv2es.data.hcf)") from None
    if zipfile.is_zipfile(io.BytesIO(data)):  # torch.save's format
        import torch

        try:
            with torch.serialization.safe_globals(_numpy_globals()):
                return _to_numpy(torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"))
        except pickle.UnpicklingError as exc:
            lines = [line for line in str(exc).splitlines() if "got" in line] or str(exc).splitlines()[-1:]
            raise HCFFormatError(f"{uri}: torch.load(weights_only=True) refused it: {lines[0].strip()[:300]}") from None
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(data), uri).load()
    except HCFFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise HCFFormatError(f"{uri}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def _numpy_globals() -> list:
    """What torch's weights-only unpickler needs beyond tensors to build numpy arrays."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDOUS"]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def _to_numpy(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


@dataclass(frozen=True)
class HCFUtterance:
    """One utterance's hand-crafted feature sequences, float32, time first."""

    id: str
    text: np.ndarray  # (words, 300)
    audio: np.ndarray  # (frames, audio columns)
    visual: np.ndarray  # (frames, 35)

    def sample(self) -> dict:
        """As the baselines' collate takes it (:class:`fv2es.models.baselines.HCFCollate`)."""
        return {"hcf_text": self.text, "hcf_audio": self.audio, "hcf_visual": self.visual}


def hfc_sizes(utterances: Mapping[str, HCFUtterance]) -> tuple[int, int, int]:
    """The ``model.hfc_sizes`` (``-hfcs``) these utterances need: each modality's width."""
    first = next(iter(utterances.values()))
    return first.text.shape[1], first.audio.shape[1], first.visual.shape[1]


def _matrix(value: Any, width: int | None, where: str) -> np.ndarray:
    arr = np.asarray(value if len(value) else np.zeros((0, width or 0)), dtype=np.float32)
    if arr.ndim != 2 or (width is not None and arr.shape[1] != width):
        want = f"(N, {width})" if width else "(N, D)"
        raise HCFFormatError(f"{where}: expected a {want} array, got shape {arr.shape}")
    return arr


def read_iemocap_hcf(datapath: str, phase: str, audio_feature_type: int = 0,
                     storage_options: Mapping[str, Any] | None = None) -> dict[str, HCFUtterance]:
    """IEMOCAP's ``phase`` from ``datapath/IEMOCAP_HCF_FEATURES``, with ``-aft``'s audio columns.

    Returns every utterance of the text file, in its order; one missing from the audio or video
    file, or a channel or column that is not there, raises :class:`HCFFormatError` naming it.
    """
    if phase not in PHASES:
        raise HCFFormatError(f"phase {phase!r}: not one of {', '.join(PHASES)}")
    if audio_feature_type not in AUDIO_FEATURE_TYPES:
        raise HCFFormatError(f"-aft={audio_feature_type}: not one of {', '.join(map(str, AUDIO_FEATURE_TYPES))}")
    columns = list(AUDIO_FEATURE_TYPES[audio_feature_type])
    folder = posixpath.join(datapath.rstrip("/"), IEMOCAP_FOLDER)
    files = {m: posixpath.join(folder, f"{phase}_{m}_features.pt") for m in ("text", "audio", "video")}
    loaded = {m: load_feature_file(uri, storage_options) for m, uri in files.items()}
    for m, obj in loaded.items():
        if not isinstance(obj, Mapping):
            raise HCFFormatError(f"{files[m]}: expected a dict of utterances, got {type(obj).__name__}")
    out = {}
    for uid, words in loaded["text"].items():
        side = "L" if speaker_side(uid) == "left" else "R"
        for m in ("audio", "video"):
            if uid not in loaded[m]:
                raise HCFFormatError(f"{files[m]}: no entry for {uid} (it is in {files['text']})")
        channels = loaded["audio"][uid]
        if side not in channels:
            raise HCFFormatError(f"{files['audio']}: {uid} has no channel {side!r} (the speaker's)")
        audio = _matrix(channels[side], None, f"{files['audio']}: {uid}[{side!r}]").T
        if audio.shape[1] <= max(columns):
            raise HCFFormatError(f"{files['audio']}: {uid} has {audio.shape[1]} descriptors per frame; "
                                 f"-aft={audio_feature_type} reads columns up to {max(columns)}")
        frames = loaded["video"][uid]
        # The seed's sample_by_interval(full=True): indices 0 .. len // 2 - 1 of the speaker's side.
        keys = [f"image_{side}_{i}" for i in range(len(frames) // 2)]
        vectors = [np.asarray(frames[k], dtype=np.float32)[-VISUAL_AU_COLUMNS:] for k in keys if k in frames]
        visual = _matrix(vectors, VISUAL_AU_COLUMNS, f"{files['video']}: {uid}")
        out[uid] = HCFUtterance(uid, _matrix(words, TEXT_WIDTH, f"{files['text']}: {uid}"),
                                np.ascontiguousarray(audio[:, columns]), visual)
    return out


def read_mosei_hcf(datapath: str, phase: str,
                   storage_options: Mapping[str, Any] | None = None) -> dict[str, HCFUtterance]:
    """CMU-MOSEI's ``phase`` from ``datapath/MOSEI_HCF_FEATURES/mosei_senti_hcf_{phase}.pkl``."""
    if phase not in PHASES:
        raise HCFFormatError(f"phase {phase!r}: not one of {', '.join(PHASES)}")
    uri = posixpath.join(datapath.rstrip("/"), MOSEI_FOLDER, f"mosei_senti_hcf_{phase}.pkl")
    hcf = load_feature_file(uri, storage_options)
    missing = [k for k in ("id", "text", "audio", "vision") if not isinstance(hcf, Mapping) or k not in hcf]
    if missing:
        raise HCFFormatError(f"{uri}: expected a dict with id, text, audio and vision; missing {', '.join(missing)}")
    ids = [i.decode() if isinstance(i, bytes) else i for i in np.asarray(hcf["id"]).tolist()]
    if not all(isinstance(i, str) for i in ids):
        raise HCFFormatError(f"{uri}: ids must be strings, got e.g. {ids[0]!r}")
    n = len(ids)
    if not len(hcf["text"]) == len(hcf["audio"]) == len(hcf["vision"]) == n:
        raise HCFFormatError(f"{uri}: {n} ids but {len(hcf['text'])} text, {len(hcf['audio'])} audio and "
                             f"{len(hcf['vision'])} vision entries")
    audio_width = np.asarray(hcf["audio"][0]).shape[-1] if n else None
    return {uid: HCFUtterance(uid, _matrix(hcf["text"][i], TEXT_WIDTH, f"{uri}: {uid} text"),
                              _matrix(hcf["audio"][i], audio_width, f"{uri}: {uid} audio"),
                              _matrix(hcf["vision"][i], VISUAL_AU_COLUMNS, f"{uri}: {uid} vision"))
            for i, uid in enumerate(ids)}


# --- MESM's release as training examples (``fv2es preprocess --dataset iemocap-hcf|mosei-hcf``) ----

SPLIT_FOLDERS = {"iemocap": "IEMOCAP_SPLIT", "mosei": "MOSEI_SPLIT"}
META_FOLDERS = {"iemocap": "IEMOCAP_RAW_PROCESSED", "mosei": "MOSEI_RAW_PROCESSED"}


@dataclass(frozen=True)
class HCFExample:
    """One utterance of MESM's release as the seed's baselines train on it."""

    id: str
    split: str  # train | valid | test (the phase whose split list names it)
    labels: tuple[str, ...]  # emotion names
    text: str  # the transcript MESM's meta.pkl gives
    features: HCFUtterance


def read_mesm_examples(datapath: str, dataset: str, emotions: tuple[str, ...], audio_feature_type: int = 0,
                       storage_options: Mapping[str, Any] | None = None) -> list[HCFExample]:
    """Every utterance the seed trains and evaluates a baseline on: the ids of
    ``{IEMOCAP|MOSEI}_SPLIT/{phase}_split.txt``, their labels and text from
    ``{IEMOCAP|MOSEI}_RAW_PROCESSED/meta.pkl`` (IEMOCAP: one label name; CMU-MOSEI: a 0/1 vector
    over ``emotions``), their features from the phase's feature files (as the readers above keep them)."""
    root = datapath.rstrip("/")
    meta_uri = posixpath.join(root, META_FOLDERS[dataset], "meta.pkl")
    meta = load_feature_file(meta_uri, storage_options)
    if not isinstance(meta, Mapping):
        raise HCFFormatError(f"{meta_uri}: expected a dict of utterances, got {type(meta).__name__}")
    out = []
    for phase in PHASES:
        split_uri = posixpath.join(root, SPLIT_FOLDERS[dataset], f"{phase}_split.txt")
        try:
            with fsspec.open(split_uri, "r", **dict(storage_options or {})) as f:
                ids = [line.strip() for line in f.read().splitlines() if line.strip()]
        except FileNotFoundError:
            raise HCFFormatError(f"{split_uri}: not found (MESM's split lists)") from None
        features = (read_iemocap_hcf(root, phase, audio_feature_type, storage_options) if dataset == "iemocap"
                    else read_mosei_hcf(root, phase, storage_options))
        for uid in ids:
            if uid not in meta or uid not in features:
                where = meta_uri if uid not in meta else f"the {phase} feature files"
                raise HCFFormatError(f"{split_uri}: {uid} is not in {where}")
            out.append(HCFExample(uid, phase, _labels(meta[uid], emotions, f"{meta_uri}: {uid}"),
                                  str(meta[uid].get("text") or ""), features[uid]))
    return out


def _labels(entry: Mapping, emotions: tuple[str, ...], where: str) -> tuple[str, ...]:
    label = entry.get("label") if isinstance(entry, Mapping) else None
    if isinstance(label, str):  # IEMOCAP: the seed's emotion key
        if label not in emotions:
            raise HCFFormatError(f"{where}: label {label!r} is not one of {', '.join(emotions)}")
        return (label,)
    vector = np.asarray(label if label is not None else [], dtype=np.float64).reshape(-1)
    if vector.shape != (len(emotions),):
        raise HCFFormatError(f"{where}: expected a label name or a 0/1 vector over {len(emotions)} emotions, "
                             f"got {label!r}")
    return tuple(e for e, v in zip(emotions, vector) if v > 0)
